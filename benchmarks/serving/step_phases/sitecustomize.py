"""Per-step phase timer for the scheduler process (benchmarks only; the package is unchanged).

Put this folder first on PYTHONPATH and set RADIXSERVE_STEP_PHASES=<out.jsonl>: every Python
process then imports this file, and the scheduler process (spawned) wraps its scheduler's parts
once the scheduler module is imported. Each decode step (one request, one new token) appends
one JSON line of wall and thread-CPU nanoseconds per phase; `report.py` summarises the file.

Phases: `gap` (end of one step() to the start of the next: encode + send of the updates, inbox
poll, session expiry), `schedule` (step() up to the forward: batch build, sampling info),
then runner.forward split into `embed` (entry, embedding), `layers` (the decoder layers: the
fused native step), `final_norm`, `lm_head` (logits), `fwd_exit`; `finish` (to the sampler),
`sample`, `between`, `process` (_process_results: token append, finish checks, updates), `tail`
(the rest of step()).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
from typing import Any

OUT = os.environ.get("RADIXSERVE_STEP_PHASES")
TARGET = "radixserve.engine.scheduler"


def _install(mod: Any) -> None:
    out = open(OUT, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    marks: dict[str, tuple[int, int]] = {}
    last_end: list[tuple[int, int]] = []

    def mark(name: str) -> None:
        marks[name] = (clock(), cpu())

    orig_build = mod.build_scheduler

    def build_scheduler(args: Any) -> Any:
        sched = orig_build(args)
        step, forward, sample, process = (sched.step, sched.runner.forward, sched.runner.sample,
                                          sched._process_results)

        def timed_forward(fb: Any) -> Any:
            mark("f0")
            r = forward(fb)
            mark("f1")
            return r

        def timed_sample(logits: Any, info: Any) -> Any:
            mark("s0")
            r = sample(logits, info)
            mark("s1")
            return r

        def timed_process(batch: Any, s: Any) -> Any:
            mark("p0")
            r = process(batch, s)
            mark("p1")
            return r

        def timed_step() -> Any:
            marks.clear()
            mark("t0")
            decode = len(sched.running) == 1 and not sched.waiting and sched.chunked is None
            r = step()
            mark("t1")
            keys = ("t0", "f0", "l0", "l1", "h0", "h1", "f1", "s0", "s1", "p0", "p1", "t1")
            if decode and all(k in marks for k in keys) and last_end:
                row: dict[str, Any] = {}
                bounds = [last_end[0], *(marks[k] for k in keys)]
                names = ["gap", "schedule", "embed", "layers", "final_norm", "lm_head",
                         "fwd_exit", "finish", "sample", "between", "process", "tail"]
                for name, a, b in zip(names, bounds, bounds[1:], strict=False):
                    row[name] = (b[0] - a[0], b[1] - a[1])
                out.write(json.dumps(row) + "\n")
            last_end[:] = [marks["t1"]]
            return r

        model = sched.runner.model
        layers, logits_fn = model._run_layers, model.compute_logits

        def timed_layers(*a: Any) -> Any:
            mark("l0")
            r = layers(*a)
            mark("l1")
            return r

        def timed_logits(h: Any) -> Any:
            mark("h0")
            r = logits_fn(h)
            mark("h1")
            return r

        model._run_layers, model.compute_logits = timed_layers, timed_logits
        sched.step, sched.runner.forward, sched.runner.sample = timed_step, timed_forward, timed_sample
        sched._process_results = timed_process
        return sched

    mod.build_scheduler = build_scheduler


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        orig_exec = loader.exec_module  # type: ignore[union-attr]

        def exec_module(module: Any) -> None:
            orig_exec(module)
            _install(module)

        loader.exec_module = exec_module  # type: ignore[union-attr]
        return spec


if OUT:
    sys.meta_path.insert(0, _Finder())
