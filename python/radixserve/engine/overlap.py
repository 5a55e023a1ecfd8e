"""Overlap scheduling: the host prepares and launches decode step n+1 while step n runs.

Plain loop: schedule n -> forward n -> sample n -> wait for tokens n -> process n -> schedule n+1.
Overlap: a decode step's results are not waited for at once; it becomes `Scheduler.pending`.
At the next `step()` the scheduler launches the LOOKAHEAD step n+1 for the same requests, in the
same order, feeding step n's sampled ids straight from the device (no host round trip), and only
then waits for step n's tokens and processes them (finish checks, streaming). On a GPU the host
work of n overlaps the forward of n+1; on the CPU every forward is synchronous and the split runs
the same code (which is how the tests check it: greedy tokens equal the plain loop's).

A request that finishes at step n was already in step n+1: its extra token is dropped and the KV
slot it wrote is freed when n+1 is processed (SGLang does the same). Lookahead happens only when
nothing else wants the step (no waiting or chunked request, no pending grammar, no speculation),
KV slots are free without eviction or retraction, and every request's next step depends on
nothing but its last token (no grammar, penalties, or min_new_tokens bias still to apply).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from radixserve.device import HostCopy
from radixserve.engine.cascade import shared_prefix_groups
from radixserve.engine.penalty_state import uses_penalty
from radixserve.engine.request import Req
from radixserve.engine.schedule_batch import build_sampling_info
from radixserve.engine.step_guard import InflightStep
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.sampling_info import SampleOutput

# Overlap pays off only where the forward runs asynchronously (a GPU). This test hook turns it on
# for the CPU too, so the CPU suite checks the scheduling split end to end.
OVERLAP_ON_CPU_ENV = "RADIXSERVE_OVERLAP_ON_CPU"


def overlap_enabled(args: Any, runner: Any) -> bool:
    if args.disable_overlap_schedule:
        return False
    device = getattr(runner, "device", torch.device("cpu"))
    return device.type != "cpu" or os.environ.get(OVERLAP_ON_CPU_ENV) == "1"


@dataclass
class PendingStep:
    """A launched decode step whose tokens the host has not processed yet."""

    reqs: list[Req]  # batch order; requests finished before it was processed are skipped
    slots: torch.Tensor  # int64 [bs]: each request's new KV slot
    next_ids: torch.Tensor  # int64 [bs] on the device: the lookahead step's input ids
    host: HostCopy  # the same sample, on its way to the host


def plain_decode_req(req: Req, context_len: int) -> bool:
    """Its next step depends only on its last token, and one more position fits."""
    return (
        req.grammar is None
        and not uses_penalty(req)
        and len(req.output_ids) >= req.min_new_tokens
        and req.kv_len + 2 <= context_len
    )


def can_defer(sched: Any, batch: list[Req], fb: ForwardBatch, extra: Any) -> bool:
    """May this just-sampled step be left pending (its processing deferred)?"""
    return (
        sched.overlap
        and fb.is_decode
        and extra is None
        and sched.speculator is None
        and all(plain_decode_req(r, sched.context_len) for r in batch)
    )


def can_look_ahead(sched: Any, pending: PendingStep) -> bool:
    live = [r for r in pending.reqs if not r.finished]
    return (
        bool(live)
        and not sched.waiting
        and sched.chunked is None
        and not (sched.grammar is not None and sched.grammar.pending)
        and sched.kv.available() >= len(live)
        and all(plain_decode_req(r, sched.context_len) for r in live)
    )


def lookahead_batch(
    reqs: list[Req], slots: torch.Tensor, input_ids: torch.Tensor, kv: Any
) -> ForwardBatch:
    """Step n+1 of `reqs` while their step n (one token each, not yet in kv_len) is pending."""
    i64 = torch.int64
    starts = [r.kv_len + 1 for r in reqs]
    rows: list[int] = []
    for r, s, slot in zip(reqs, starts, slots, strict=True):
        assert r.req_pool_idx is not None
        kv.write_slots(r, s, slot.reshape(1))
        rows.append(r.req_pool_idx)
    seq_lens = [s + 1 for s in starts]
    bs = len(reqs)
    return ForwardBatch(
        input_ids=input_ids,
        positions=torch.tensor(starts, dtype=i64),
        out_cache_loc=slots,
        req_pool_indices=torch.tensor(rows, dtype=i64),
        seq_lens=torch.tensor(seq_lens, dtype=i64),
        extend_prefix_lens=torch.tensor(starts, dtype=i64),
        extend_seq_lens=torch.ones(bs, dtype=i64),
        extend_start_loc=torch.arange(bs, dtype=i64),
        is_decode=True,
        seq_lens_list=seq_lens,
        extend_seq_lens_list=[1] * bs,
        extend_prefix_lens_list=starts,
    )


def defer(sched: Any, batch: list[Req], slots: torch.Tensor, sample: SampleOutput) -> None:
    sched.pending = PendingStep(batch, slots, sample.next_token_ids, HostCopy(sample))


def launch_lookahead(sched: Any, pending: PendingStep) -> PendingStep:
    """Allocate, build and launch step n+1 of pending's unfinished requests (same order)."""
    keep = [i for i, r in enumerate(pending.reqs) if not r.finished]
    reqs = [pending.reqs[i] for i in keep]
    input_ids = pending.next_ids
    if len(keep) < len(pending.reqs):  # some finished (or were aborted) since they were launched
        input_ids = input_ids[torch.tensor(keep, dtype=torch.int64, device=input_ids.device)]
    slots = sched.kv.alloc(len(reqs))
    if slots is None:
        raise RuntimeError("KV allocation failed after the lookahead check")
    try:
        fb = lookahead_batch(reqs, slots, input_ids, sched.kv)
        if not sched.args.disable_cascade_attention:
            fb.cascade = shared_prefix_groups(
                reqs, sched.kv.req_to_token, sched.args.cascade_min_prefix
            )
            sched.stats["num_cascade_steps"] += fb.cascade is not None
        info = build_sampling_info(reqs, sched.vocab_size)
        info.steps = info.steps + 1  # one token per request is still pending
        logits = sched.runner.forward(fb)
        sample = sched.runner.sample(logits, info)
    except BaseException:
        sched.kv.allocator.free(slots)
        raise
    sched.stats["num_forward_steps"] += 1
    sched.stats["num_lookahead_steps"] += 1
    return PendingStep(reqs, slots, sample.next_token_ids, HostCopy(sample))


def _rows(out: SampleOutput, keep: list[int]) -> SampleOutput:
    idx = torch.tensor(keep, dtype=torch.int64)

    def pick(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else t[idx]

    return SampleOutput(
        next_token_ids=out.next_token_ids[idx],
        logprobs=pick(out.logprobs),
        top_logprobs_vals=pick(out.top_logprobs_vals),
        top_logprobs_ids=pick(out.top_logprobs_ids),
    )


def process_pending(sched: Any, pending: PendingStep) -> list[Any]:
    """Wait for pending's tokens and process them; a request that finished (or was aborted)
    since the step was launched gives back the slot the step wrote for it."""
    keep = [i for i, r in enumerate(pending.reqs) if not r.finished]
    dropped = [i for i, r in enumerate(pending.reqs) if r.finished]
    live = [pending.reqs[i] for i in keep]
    # From here fail_step frees the slots of `live` that no request has counted yet.
    sched.inflight = InflightStep(live, pending.slots[torch.tensor(keep, dtype=torch.int64)])
    if dropped:
        sched.kv.allocator.free(pending.slots[torch.tensor(dropped, dtype=torch.int64)])
    sample = pending.host.wait()
    updates: list[Any] = sched._process_results(live, _rows(sample, keep)) if live else []
    sched.inflight = None
    return updates


def overlap_step(sched: Any) -> list[Any]:
    """One scheduler step while a decode step is pending: launch its lookahead (when allowed),
    then process the pending step. A failure gives back every slot nobody counted yet and
    leaves `sched.inflight` naming the requests for fail_step."""
    pending: PendingStep = sched.pending
    sched.pending = None
    nxt: Optional[PendingStep] = None
    try:
        if can_look_ahead(sched, pending):
            nxt = launch_lookahead(sched, pending)
    except BaseException:
        sched.kv.allocator.free(pending.slots)  # processed by nobody: all unowned
        sched.inflight = InflightStep([r for r in pending.reqs if not r.finished])
        raise
    try:
        updates = process_pending(sched, pending)
    except BaseException:
        if nxt is not None:
            sched.kv.allocator.free(nxt.slots)
        raise
    sched.pending = nxt
    return updates
