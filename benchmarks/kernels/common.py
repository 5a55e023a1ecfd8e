"""Shared helpers for the kernel microbenchmarks: timing, the machine's memory ceiling, JSON lines.

Every kernel benchmark prints one JSON object per case, carrying the achieved bandwidth (or
FLOP rate) next to the ceiling measured in the same run, so a result can be judged on its own
even on a machine shared with other jobs. Scripts in this folder import it as `from common import
...` (running `python benchmarks/kernels/bench_x.py` puts this folder on sys.path).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

# Large enough to defeat the last-level cache (32 MiB L3 on the target EPYC) by a wide margin.
_BW_BYTES = 512 * 1024 * 1024
_clock = {"fn": time.perf_counter, "name": "wall"}


def use_thread_cpu_time() -> None:
    """Time with this thread's CPU time instead of wall time (single-threaded runs only).

    On a machine shared with other jobs the scheduler takes the core away for milliseconds at a
    time; CPU time leaves those gaps out (cache and memory contention remain). It is only valid
    when the work runs on the calling thread, so this also sets torch (and OpenMP) to 1 thread.
    """
    torch.set_num_threads(1)
    _clock["fn"] = time.thread_time
    _clock["name"] = "thread_cpu"


def time_us(
    fn: Callable[[], Any], warmup: int = 3, min_iters: int = 5, min_seconds: float = 0.3
) -> float:
    """Median wall time of one call of `fn`, in microseconds.

    Runs at least `min_iters` timed calls and keeps going until `min_seconds` have passed; the
    median resists the outliers that other engineers' jobs cause on a shared machine.
    """
    clock = _clock["fn"]
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_iters or time.perf_counter() - start < min_seconds:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
        if len(samples) >= 10_000:
            break
    return statistics.median(samples) * 1e6


@lru_cache(maxsize=1)
def machine_bandwidth() -> dict[str, float]:
    """Measured memory bandwidth of this machine, in GB/s (1e9 bytes/s), with torch's threads.

    - `read_gbps`: a streaming read (sum over a buffer far larger than the caches); the ceiling
      for read-dominated kernels such as decode attention.
    - `copy_gbps`: a large tensor copy, counting bytes read plus bytes written.
    """
    n = _BW_BYTES // 4
    src = torch.rand(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    read_us = time_us(lambda: src.sum(), warmup=2, min_iters=5, min_seconds=0.5)
    copy_us = time_us(lambda: dst.copy_(src), warmup=2, min_iters=5, min_seconds=0.5)
    return {
        "read_gbps": round(_BW_BYTES / read_us / 1e3, 2),
        "copy_gbps": round(2 * _BW_BYTES / copy_us / 1e3, 2),
    }


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge a result: CPU, threads and the load from other jobs."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "threads": torch.get_num_threads(),
        "clock": _clock["name"],
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }


def emit(record: dict[str, Any]) -> None:
    """Print one benchmark case as a single JSON line (floats rounded for readability)."""
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}
    print(json.dumps(out), flush=True)


def case(
    name: str,
    us: float,
    nbytes: int,
    ref_us: float | None = None,
    **shape: Any,
) -> dict[str, Any]:
    """A standard record: time, achieved GB/s, the measured ceiling and the speedup over torch."""
    bw = machine_bandwidth()
    gbps = nbytes / us / 1e3
    rec: dict[str, Any] = {"name": name, **shape, "us": us, "gbps": gbps}
    rec["read_gbps"] = bw["read_gbps"]
    rec["copy_gbps"] = bw["copy_gbps"]
    rec["pct_of_read_bw"] = 100.0 * gbps / bw["read_gbps"]
    if ref_us is not None:
        rec["torch_us"] = ref_us
        rec["speedup_vs_torch"] = ref_us / us
    return rec


if __name__ == "__main__":
    emit({"name": "machine", **machine_info(), **machine_bandwidth()})
