"""Handing freed heap memory back to the OS (glibc), so that RSS follows what is in use."""

from __future__ import annotations

import ctypes
import functools
import math
import time
from collections.abc import Callable
from typing import Any, Optional


@functools.cache
def _malloc_trim() -> Optional[Any]:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def trim_heap() -> None:
    """glibc's malloc_trim(0) (a no-op elsewhere): free pages inside the heap go back to the OS.
    glibc keeps freed blocks mapped for reuse, and its mmap threshold grows with the largest
    block freed, so multi-MB temporaries (a weight's copies on the way to its packed form, a
    prefill's activations) stay resident after use: 73 MiB after loading the default model,
    ~34 MiB over 8 prompts of ~300 tokens."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


class IdleTrim:
    """When the scheduler trims its heap: once it has stayed idle `delay_s` after a burst of work.
    Trimming the moment a burst ends made the next burst fault its activations back in page by
    page (a 32 x 128-token encoder batch: ~40k faults, 0.1-0.9 s of kernel time on a busy host);
    a burst that follows within the delay reuses the pages instead, and RSS still drops after
    the delay."""

    def __init__(self, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay_s = delay_s
        self.clock = clock
        self.due: Optional[float] = None  # when to trim, if no work comes first

    def after_step(self, idle: bool) -> None:
        """After a step: idle now starts the delay; more work to do cancels it."""
        self.due = self.clock() + self.delay_s if idle else None

    def poll_timeout_ms(self, timeout_ms: int) -> int:
        """An idle poll's timeout, shortened so the loop wakes up when the trim is due."""
        if self.due is None:
            return timeout_ms
        return max(0, min(timeout_ms, math.ceil((self.due - self.clock()) * 1000)))

    def maybe_trim(self) -> bool:
        """Trim when the delay is over (call only while idle); True when it trimmed."""
        if self.due is None or self.clock() < self.due:
            return False
        self.due = None
        trim_heap()
        return True
