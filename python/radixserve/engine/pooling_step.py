"""The scheduler's pooling paths (#8).

- Pooling models (embeddings, classifiers): a forward returns one vector per request; a request
  whose prompt is complete takes its vector and finishes in the same step (prefill only, no
  sampling). Its KV is released at once: inserted into the radix tree for decoders (so a
  repeated prefix is reused), simply freed for encoders (no tree).
- Encoders never run a partial prompt (attention is bidirectional): a request the prefill plan
  would split goes back to the head of the queue; the token budget is at least the context
  length, so the first request of a step always runs whole.
- /v1/score on a generative model: requests carrying `label_token_ids` get the next-token
  logprobs of those ids at the end of their prompt (then sample one token and finish as usual).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from radixserve.engine import ipc
from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.request import Req

if TYPE_CHECKING:
    from radixserve.engine.schedule_policy import PrefillPlan
    from radixserve.engine.scheduler import Scheduler


def keep_whole_prompts(sched: Scheduler, plan: PrefillPlan) -> None:
    """Encoders: take back every request the plan would run only partly."""
    partial = [r for r in plan.reqs if r.kv_len + r.extend_len < r.seq_len]
    for req in reversed(partial):
        plan.reqs.remove(req)
        sched.kv.release(req)
        req.extend_len = 0
        sched.waiting.appendleft(req)
    if partial:
        plan.chunked = None


def token_types(reqs: list[Req]) -> Optional[torch.Tensor]:
    """Segment ids of this step's new tokens, or None when no request has any."""
    if not any(r.token_type_ids for r in reqs):
        return None
    out: list[int] = []
    for r in reqs:
        start, n = r.kv_len, r.extend_len
        out.extend(r.token_type_ids[start : start + n] if r.token_type_ids else [0] * n)
    return torch.tensor(out, dtype=torch.int64)


def finish_pooled(sched: Scheduler, batch: list[Req], out: torch.Tensor) -> list[ipc.ReqUpdate]:
    """Row i of `out` belongs to batch[i]; finished prompts send their row and leave."""
    updates = []
    rows: Any = None
    for i, req in enumerate(batch):
        req.kv_len += req.extend_len
        if req.kv_len < req.seq_len:  # an unfinished chunk of a decoder prompt
            sched.kv.cache_unfinished(req)
            continue
        if rows is None:
            rows = out.float().tolist()  # Python floats already: no per-value conversion
        req.pooled = rows[i]
        req.finish_reason = FinishReason(type="stop")
        sched.stats["num_prompt_tokens"] += len(req.origin_input_ids)
        sched.stats["num_cached_tokens"] += req.cached_tokens
        sched.stats["num_finished_reqs"] += 1
        sched.kv.release(req)
        updates.append(sched._update(req))
    sched.stats["num_forward_steps"] += 1
    return updates


def attach_label_logprobs(batch: list[Req], logits: torch.Tensor) -> None:
    """Score requests whose prompt ends in this step keep logprobs of their label ids."""
    for i, req in enumerate(batch):
        ids = req.label_token_ids
        if not ids or req.output_ids or req.pooled is not None:
            continue
        if req.kv_len + req.extend_len < req.seq_len:
            continue
        lp = torch.log_softmax(logits[i].float(), dim=-1)
        req.pooled = lp[torch.tensor(ids, dtype=torch.int64)].tolist()
