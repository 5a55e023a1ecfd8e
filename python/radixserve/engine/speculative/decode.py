"""One speculative decode step: n-gram drafts for the running requests, verified in one forward.

Each eligible request feeds its last token plus up to k draft tokens (as many as its
acceptance rate pays for: policy.py; an extend of 1 + k tokens, causal over its KV); the logits at those 1 + k positions give the target distribution
after each prefix. Greedy requests accept the drafts while they equal the argmax, then take the
model's own token after the last accepted draft: token for token what plain greedy decoding
produces. Sampled requests accept by rejection sampling against the sampler's distribution
(rejection.py), which keeps plain sampling's distribution. Either way one more token than the
accepted drafts comes from the step. KV slots of rejected drafts are freed at once; the
accepted drafts' KV is already in place.

No step speculates while a running request wants logprobs or has a grammar. Eligible:
requests without a pending min_new_tokens (their stop-token bias changes per position);
penalties count the drafts before each position (rejection.py). Others decode one token in the
same forward, through the normal sampler.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import torch

from radixserve.engine.request import Req
from radixserve.engine.schedule_batch import build_forward_batch, build_sampling_info
from radixserve.engine.speculative.ngram import longest_match
from radixserve.engine.speculative.policy import AcceptanceEstimate
from radixserve.engine.speculative.rejection import verify_drafts
from radixserve.engine.step_guard import InflightStep
from radixserve.forward_batch import ForwardBatch

if TYPE_CHECKING:
    from radixserve.engine import ipc
    from radixserve.engine.scheduler import Scheduler


def as_decode_rows(fb: ForwardBatch) -> ForwardBatch:
    """The verify extend as a decode batch of one row per token: row t of request b is a decode
    of b at position p_t with seq_len p_t + 1. Every layer stores all rows' KV before any row
    attends, so each row sees its request's earlier tokens and the drafts before it (causal),
    exactly as the extend would; the step then runs through the decode path (the fused native
    DecoderStack), where a 1 + k token extend took the per-op path at several times the cost
    of a decode step."""
    n = int(fb.input_ids.shape[0])
    seq_lens = fb.positions + 1
    seq_list = seq_lens.tolist()
    return replace(
        fb,
        req_pool_indices=fb.req_pool_indices.repeat_interleave(fb.extend_seq_lens),
        seq_lens=seq_lens,
        extend_prefix_lens=fb.positions.clone(),
        extend_seq_lens=torch.ones(n, dtype=torch.int64),
        extend_start_loc=torch.arange(n, dtype=torch.int64),
        is_decode=True,
        seq_lens_list=seq_list,
        extend_seq_lens_list=[1] * n,
        extend_prefix_lens_list=[s - 1 for s in seq_list],
        cascade=None,
    )


def eligible(req: Req) -> bool:
    return not req.return_logprob and len(req.output_ids) >= req.min_new_tokens


class NgramSpeculator:
    """num_draft caps the drafts of a request per step; adaptive (policy.py) sends only as
    many of them as its acceptance rate pays for, else all that the n-gram match offers."""

    def __init__(
        self, num_draft: int, max_ngram: int = 4, min_ngram: int = 1, adaptive: bool = True
    ) -> None:
        self.num_draft = num_draft
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.adaptive = adaptive

    def drafts(self, req: Req) -> list[int]:
        if not eligible(req):
            return []
        # Room for the drafts and the bonus token within max_new_tokens and the context.
        k = min(self.num_draft, req.remaining_new_tokens() - 1, req.context_len - req.seq_len - 1)
        if k <= 0:
            return []
        match_len, proposal = longest_match(req.fill_ids, k, self.max_ngram, self.min_ngram)
        if not self.adaptive:
            return proposal
        est = req.spec_estimate
        if est is None:
            est = req.spec_estimate = AcceptanceEstimate()
        est.check_shadow(req.output_ids)
        return est.choose(match_len, proposal, len(req.output_ids)) if proposal else []

    def step(self, sched: Scheduler) -> Optional[list[ipc.ReqUpdate]]:
        """Run one verify step over sched.running (decodes only); None when no request has a
        draft (or KV is short), so the caller runs a normal decode step."""
        batch = list(sched.running)
        # Constrained rows need the grammar mask and accept step of a normal decode step.
        if any(r.return_logprob or getattr(r, "grammar", None) is not None for r in batch):
            return None
        drafts = [self.drafts(r) for r in batch]
        if not any(drafts):
            return None
        for r, d in zip(batch, drafts, strict=True):
            r.draft_ids = d
            r.extend_len = 1 + len(d)
        slots = sched.kv.alloc(sum(r.extend_len for r in batch))
        if slots is None:
            for r in batch:
                r.draft_ids = []
                r.extend_len = 1
            return None
        sched.inflight = InflightStep(batch, slots)  # a failing verify step frees these slots
        fb = as_decode_rows(build_forward_batch(batch, slots, sched.kv))
        rows: list[int] = []  # logits rows: every position of a drafting request, else the last
        first_row: list[int] = []
        offset = 0
        for r in batch:
            first_row.append(len(rows))
            lo = offset if r.draft_ids else offset + r.extend_len - 1
            rows.extend(range(lo, offset + r.extend_len))
            offset += r.extend_len
        fb.logits_indices = torch.tensor(rows, dtype=torch.int64)
        out = sched.runner.forward(fb)
        logits = out if isinstance(out, torch.Tensor) else out.next_token_logits
        plain = [i for i, r in enumerate(batch) if not r.draft_ids]
        sampled: dict[int, int] = {}
        if plain:
            info = build_sampling_info([batch[i] for i in plain], sched.vocab_size)
            res = sched.runner.sample(logits[[first_row[i] for i in plain]], info)
            sampled = dict(zip(plain, res.next_token_ids.tolist(), strict=True))
        verified = self._verify(sched, batch, first_row, logits)
        sched.inflight = None
        sched.stats["num_forward_steps"] += 1
        return self._finish(sched, batch, verified, sampled)

    @staticmethod
    def _verify(
        sched: Scheduler, batch: list[Req], first_row: list[int], logits: torch.Tensor
    ) -> dict[int, tuple[list[int], int]]:
        """New tokens and accepted-draft count of every drafting request (index in batch),
        greedy and sampled alike, in one verify call."""
        drafting = [i for i, r in enumerate(batch) if r.draft_ids]
        reqs = [batch[i] for i in drafting]
        rows = [
            row for i in drafting for row in range(first_row[i], first_row[i] + batch[i].extend_len)
        ]
        info = build_sampling_info(reqs, sched.vocab_size)
        results = verify_drafts(logits[rows], info, [r.draft_ids for r in reqs])
        return dict(zip(drafting, results, strict=True))

    def _finish(
        self,
        sched: Scheduler,
        batch: list[Req],
        verified: dict[int, tuple[list[int], int]],
        sampled: dict[int, int],
    ) -> list[ipc.ReqUpdate]:
        updates = []
        for i, req in enumerate(batch):
            if i in verified:
                new, accepted = verified[i]
                req.spec_verify_ct += 1
                req.spec_draft_tokens += len(req.draft_ids)
                req.spec_accepted_tokens += accepted
                est = req.spec_estimate
                if est is not None:  # the rejected draft was tried too
                    est.record(est.cls, accepted, accepted + (accepted < len(req.draft_ids)))
                sched.stats["num_spec_draft_tokens"] += len(req.draft_ids)
                sched.stats["num_spec_accepted_tokens"] += accepted
            else:
                new = [sampled[i]]
            appended = 0
            for t in new:
                req.output_ids.append(int(t))
                appended += 1
                sched.stats["num_generated_tokens"] += 1
                req.check_finished(sched.tokenizer)
                if req.finished:
                    break
            # KV now holds the last token and the accepted drafts; free the rejected ones.
            old_kv = req.kv_len
            req.kv_len = old_kv + appended
            if req.extend_len > appended:
                assert req.req_pool_idx is not None
                row = sched.kv.req_to_token[req.req_pool_idx]
                sched.kv.allocator.free(row[req.kv_len : old_kv + req.extend_len].to(torch.int64))
            req.draft_ids = []
            req.extend_len = 0
            if req.finished:
                sched.kv.release(req)
                sched.stats["num_finished_reqs"] += 1
            fresh = len(req.output_ids) - req.sent_len
            if req.finished or (req.stream and fresh >= req.stream_interval):
                updates.append(sched._update(req))
        sched.running = [r for r in sched.running if not r.finished]
        return updates
