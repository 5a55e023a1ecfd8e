"""The CUDA build's architecture list (CMakeLists.txt + cmake/cuda_archs.cmake), read by CMake
itself in script mode: no CUDA toolkit is needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cuda_archs(arch_list: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "archs.cmake"
    script.write_text(
        f'include("{ROOT / "cmake" / "cuda_archs.cmake"}")\n'
        f'radixserve_cuda_archs(out "{arch_list}")\n'
        'message(NOTICE "ARCHS=${out}")\n'
    )
    return subprocess.run(
        ["cmake", "-P", str(script)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
@pytest.mark.parametrize(
    ("given", "archs"),
    [
        ("", "80;90a"),  # the default: A100 and H100/H200 (with the sm_90a features)
        ("8.0;9.0a", "80;90a"),
        ("8.0 8.6+PTX", "80;86"),
        ("sm_80;sm_90a", "80;90a"),
        ("9.0", "90"),
        ("10.0a 12.0", "100a;120"),
    ],
)
def test_torch_cuda_arch_list_spellings(given: str, archs: str, tmp_path: Path) -> None:
    out = cuda_archs(given, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"ARCHS={archs}" in out.stderr


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_unreadable_arch_fails_clearly(tmp_path: Path) -> None:
    out = cuda_archs("ampere", tmp_path)
    assert out.returncode != 0 and "cannot read CUDA architecture 'ampere'" in out.stderr
