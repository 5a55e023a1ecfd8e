"""Import order of the native module, and a clean offline-Engine shutdown (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import radixserve

ROOT = Path(__file__).resolve().parents[2]
# The package these tests import (the source tree in development, the installed one in CI).
PACKAGE_PARENT = Path(radixserve.__file__).resolve().parents[1]


def run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)  # fmt: skip


def test_native_module_before_torch() -> None:
    r = run("""
        import sys, radixserve
        assert "torch" not in sys.modules  # importing the package stays cheap
        import radixserve._C as c
        print(c.KVAllocator(10).alloc(3).tolist())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1, 2, 3]"


def test_engine_shutdown_leaks_no_semaphore(tiny_llama_dir: str) -> None:
    r = run(f"""
        import radixserve
        if __name__ == "__main__":
            e = radixserve.Engine({tiny_llama_dir!r}, max_total_tokens=256, log_level="warning")
            out = e.generate(input_ids=[1, 2, 3], sampling_params={{"max_new_tokens": 2}})
            assert len(out["output_ids"]) == 2
            e.shutdown()
    """)
    assert r.returncode == 0, r.stderr
    assert "leaked" not in r.stderr, r.stderr
