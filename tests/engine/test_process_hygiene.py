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


def test_http_side_never_imports_torch() -> None:
    """The HTTP process (serve, the TokenizerManager's module, the app, the default model's
    tokenizer) runs without torch: ~200 MB and seconds of start-up (only the scheduler
    process runs the model). The first grammar check imports xgrammar, which brings torch
    along: the second line shows that the check sees torch when it is there."""
    from radixserve.models.tokenizer import load_tokenizer

    load_tokenizer(None)  # builds the cached tokenizer on a fresh machine (that path needs torch)
    r = run("""
        import sys
        import radixserve.serve
        from radixserve.engine import tokenizer_manager
        from radixserve.entrypoints.app import create_app
        from radixserve.models.tokenizer import load_tokenizer
        tok = load_tokenizer(None)
        assert tok.decode(tok.encode("Hello world")) == "Hello world"
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "xgrammar")))
        from radixserve.engine.sampling_params import SamplingParams
        SamplingParams(regex="[a-z]+").verify()
        print("torch" in sys.modules)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "True"], r.stdout
