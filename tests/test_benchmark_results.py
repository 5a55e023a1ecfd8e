"""Every benchmark results file says what it measured with: the dtype and the machine's load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
DTYPE = re.compile(r"dtype|float32|bfloat16|\bbf16\b|\bfp32\b|Q4_1|Q8_0", re.IGNORECASE)
LOAD = re.compile(r"load average|\bload\b[^\n]{0,20}\d|quiet machine|1-minute load", re.IGNORECASE)


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.md")), ids=lambda p: p.name)
def test_results_file_states_dtype_and_load(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert DTYPE.search(text), f"{path.name} does not state the dtype"
    assert LOAD.search(text), f"{path.name} does not state the machine load"


def test_patterns_need_the_words() -> None:
    assert not DTYPE.search("ran the kernel at batch 64") and DTYPE.search("float32 logits")
    assert not LOAD.search("2 cores, AVX2") and LOAD.search("load average 12-16")
