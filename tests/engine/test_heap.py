"""trim_heap gives freed heap memory back: RSS drops once a pinned heap top keeps glibc from
trimming on its own (what the scheduler's freed temporaries look like). In a subprocess: the
test changes malloc's trim threshold for the whole process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import radixserve

CODE = """
import ctypes
from radixserve.engine.heap import trim_heap

def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

ctypes.CDLL(None).mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: free() never trims by itself
blocks = [bytearray(2000) for _ in range(40_000)]  # ~80 MB of malloc'd (not pymalloc) blocks
pin = bytearray(2000)  # above them: the heap's top stays in use
before = rss_mib()
del blocks
freed = rss_mib()
trim_heap()
print(before, freed, rss_mib())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_returns_freed_heap_pages() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(radixserve.__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(CODE)], capture_output=True,
                       text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    before, freed, after = map(float, r.stdout.split())
    assert before - freed < 20, r.stdout  # glibc kept the freed blocks resident
    assert freed - after > 60, r.stdout  # and trim_heap handed them back


def test_idle_trim_waits_for_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's trim comes only after `delay_s` of idle; work in between cancels it."""
    from radixserve.engine import heap

    trims: list[float] = []
    now = [100.0]
    monkeypatch.setattr(heap, "trim_heap", lambda: trims.append(now[0]))
    idle = heap.IdleTrim(0.5, clock=lambda: now[0])
    assert idle.poll_timeout_ms(1000) == 1000 and not idle.maybe_trim()  # nothing ran yet
    idle.after_step(idle=True)  # a burst ended
    assert idle.poll_timeout_ms(1000) == 500  # the idle poll wakes up when the trim is due
    now[0] += 0.2
    assert idle.poll_timeout_ms(1000) == 300 and not idle.maybe_trim() and trims == []
    idle.after_step(idle=False)  # work arrived within the delay: its pages are reused, no trim
    now[0] += 1.0
    assert not idle.maybe_trim() and trims == []
    idle.after_step(idle=True)
    now[0] += 0.5
    assert idle.poll_timeout_ms(1000) == 0 and idle.maybe_trim() and trims == [now[0]]
    assert not idle.maybe_trim() and idle.poll_timeout_ms(1000) == 1000  # once per burst
