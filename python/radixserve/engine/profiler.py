"""/start_profile and /stop_profile: a torch profiler around the scheduler's steps (SGLang's
routes). It runs in the scheduler process, where the model runs; the trace is a Chrome trace
JSON (chrome://tracing, Perfetto) written to the request's output_dir."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

import torch

from radixserve.engine.ipc import ProfileReq

logger = logging.getLogger(__name__)

ACTIVITIES = {"CPU": torch.profiler.ProfilerActivity.CPU, "GPU": torch.profiler.ProfilerActivity.CUDA}


class StepProfiler:
    """At most one profile at a time; it ends on /stop_profile or after num_steps steps."""

    def __init__(self) -> None:
        self.prof: Optional[Any] = None
        self.output_dir = ""
        self.steps_left: Optional[int] = None

    def control(self, req: ProfileReq) -> tuple[bool, str]:
        return self._start(req) if req.start else self._stop()

    def after_step(self) -> None:
        if self.prof is None or self.steps_left is None:
            return
        self.steps_left -= 1
        if self.steps_left <= 0:
            ok, message = self._stop()
            logger.log(logging.INFO if ok else logging.WARNING, "profile: %s", message)

    def _start(self, req: ProfileReq) -> tuple[bool, str]:
        if self.prof is not None:
            return False, "A profile is already running; stop it first (/stop_profile)."
        cuda = torch.cuda.is_available()
        activities = req.activities if req.activities is not None else (
            ["CPU", "GPU"] if cuda else ["CPU"])  # fmt: skip
        if not activities or any(a not in ACTIVITIES for a in activities):
            return False, f"activities must be a non-empty list of {sorted(ACTIVITIES)}."
        if "GPU" in activities and not cuda:
            return False, "activities: GPU asked for, but this server runs on the CPU."
        if req.num_steps is not None and req.num_steps < 1:
            return False, "num_steps must be at least 1."
        try:
            os.makedirs(req.output_dir, exist_ok=True)
            if not os.access(req.output_dir, os.W_OK):
                raise PermissionError("not writable")
        except OSError as e:
            return False, f"output_dir {req.output_dir!r} cannot be written: {e}"
        self.prof = torch.profiler.profile(
            activities=[ACTIVITIES[a] for a in activities],
            record_shapes=req.record_shapes, with_stack=req.with_stack,
        )  # fmt: skip
        self.prof.start()
        self.output_dir, self.steps_left = req.output_dir, req.num_steps
        return True, "Profiling started."

    def _stop(self) -> tuple[bool, str]:
        if self.prof is None:
            return False, "No profile is running (/start_profile first)."
        prof, self.prof = self.prof, None
        prof.stop()
        path = os.path.join(self.output_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
                            ".scheduler.trace.json")  # fmt: skip
        try:
            prof.export_chrome_trace(path)
        except OSError as e:
            return False, f"Profile stopped, but its trace could not be written: {e}"
        return True, f"Profile written to {path}"
