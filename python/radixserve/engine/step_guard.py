"""Containing a failing scheduler step: only the requests of that step fail.

The scheduler records what a step has touched (`InflightStep`: its requests, the KV slots
allocated for their new tokens, which requests already took ownership of those slots) so that,
when the forward, the sampler or the bookkeeping raises, `fail_step` can give every slot back
(the pool ends up exactly as if the requests had been aborted) and answer each caller with the
reason instead of letting the exception end the scheduler process.

`maybe_inject_fault` is a test-only hook: with RADIXSERVE_TEST_FAULT=<marker> in the
scheduler's environment, a step that contains a request whose prompt text holds <marker>
raises before the forward. It costs one dict lookup per request when the variable is unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from radixserve.engine.request import Req

FAULT_ENV = "RADIXSERVE_TEST_FAULT"
_FAULT_MARKER: Optional[str] = os.environ.get(FAULT_ENV) or None


class InjectedFault(RuntimeError):
    """Raised by the test hook; never raised unless RADIXSERVE_TEST_FAULT is set."""


@dataclass
class InflightStep:
    reqs: list[Req]
    slots: Optional[torch.Tensor] = None  # this step's new KV slots, in batch order
    # ids of requests whose kv_len already counts this step's slots (they own them now)
    advanced: set[int] = field(default_factory=set)


def maybe_inject_fault(reqs: list[Req], tokenizer: Any) -> None:
    if _FAULT_MARKER is None:
        return
    for req in reqs:
        hit = getattr(req, "_fault_hit", None)
        if hit is None:  # decode the prompt once per request, not once per step
            hit = _FAULT_MARKER in tokenizer.decode(req.origin_input_ids)
            req._fault_hit = hit  # type: ignore[attr-defined]
        if hit:
            raise InjectedFault(f"injected fault (prompt contains {_FAULT_MARKER!r})")


def free_step_kv(step: InflightStep, kv: Any) -> None:
    """Give back the slots of a failed step and everything its requests hold."""
    offset = 0
    for req in step.reqs:
        n = req.extend_len
        if step.slots is not None and id(req) not in step.advanced and n > 0:
            # Allocated for this step but never counted in kv_len: nobody else frees them.
            kv.allocator.free(step.slots[offset : offset + n])
        offset += n
        # kv_len covers every slot the request owns (this step's too once advanced); release()
        # caches what was computed by successful steps in the tree and frees the rest.
        kv.release(req)
