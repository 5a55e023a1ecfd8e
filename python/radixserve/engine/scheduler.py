"""The scheduler process: continuous batching around one ModelRunner.

Each step: take new requests / aborts / queries from the TokenizerManager; make sure every
running decode has a KV slot (evict cache leaves, else retract the newest requests); add
prefill work (the unfinished chunk first, then waiting requests by policy) within the token
budget; run ONE forward mixing the prefill chunks and the decodes; sample; append tokens,
check finish; send all updates of the step in one message.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import torch
import zmq

from radixserve.args import ServerArgs
from radixserve.constrained.grammar_manager import GrammarManager, make_backend
from radixserve.engine import ipc
from radixserve.engine.cascade import shared_prefix_groups
from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.heap import IdleTrim, trim_heap
from radixserve.engine.input_logprobs import Span, collect_input_logprobs, input_logits_rows
from radixserve.engine.kv_manager import KVManager, make_allocator
from radixserve.engine.overlap import PendingStep, can_defer, defer, overlap_enabled, overlap_step
from radixserve.engine.pausing import Inbox, PausedStep
from radixserve.engine.pooling_step import (
    attach_label_logprobs,
    finish_pooled,
    keep_whole_prompts,
    token_types,
)
from radixserve.engine.profiler import StepProfiler
from radixserve.engine.request import Req
from radixserve.engine.schedule_batch import build_forward_batch, build_sampling_info
from radixserve.engine.schedule_policy import (
    INIT_NEW_TOKEN_RATIO,
    MIN_NEW_TOKEN_RATIO,
    NEW_TOKEN_RATIO_DECAY,
    PrefillPlan,
    background_prefill_budget,
    background_step_cap,
    has_online_work,
    headroom,
    order_waiting,
    plan_prefill,
    preempt_for_online,
    take_background_rows,
)
from radixserve.engine.session import SessionManager
from radixserve.engine.speculative.decode import NgramSpeculator
from radixserve.engine.step_guard import InflightStep, free_step_kv, maybe_inject_fault
from radixserve.forward_batch import ForwardBatch, PausedForward
from radixserve.layers.sampling_info import SampleOutput, SamplingBatchInfo
from radixserve.models.tokenizer import added_bos

if TYPE_CHECKING:  # the runner (torch, model code) is imported inside the scheduler process
    from radixserve.engine.model_runner import ModelRunner

logger = logging.getLogger("radixserve.scheduler")
# Idle seconds after a burst of work before the heap is trimmed (heap.IdleTrim).
IDLE_TRIM_DELAY_S = 0.5


class Scheduler:
    def __init__(self, args: ServerArgs, runner: ModelRunner, kv: KVManager) -> None:
        self.args = args
        self.runner = runner
        self.kv = kv
        cfg = runner.model_config
        self.vocab_size = int(cfg.vocab_size)
        self.context_len = int(cfg.context_len)
        self.eos_token_ids = [int(t) for t in (cfg.eos_token_ids or [])]
        self.tokenizer = runner.tokenizer
        self.waiting: deque[Req] = deque()
        self.running: list[Req] = []  # prompt fully in KV: one token per step
        self.chunked: Optional[Req] = None  # prompt partly in KV
        self.new_token_ratio = INIT_NEW_TOKEN_RATIO
        self.budget = min(args.chunked_prefill_size, args.max_prefill_tokens)
        # Constrained decoding (issue #10): None with --grammar-backend none.
        pooling = bool(getattr(runner, "is_pooling", False))  # pooling models sample nothing
        # Their steps all share one empty sampling batch (nothing reads it).
        self.no_sampling = build_sampling_info([], self.vocab_size) if pooling else None
        backend = None if pooling else make_backend(
            args.grammar_backend, self.tokenizer, self.vocab_size, self.eos_token_ids)
        self.grammar = GrammarManager(
            backend, args.grammar_cache_size, jump_forward=args.grammar_jump_forward
        ) if backend else None
        # Encoders (#8) run whole prompts (never chunked), so chunked_prefill_size does not
        # apply: a step holds up to max_prefill_tokens, and at least the longest prompt.
        self.is_encoder = bool(getattr(cfg, "is_encoder", False))
        if self.is_encoder:
            self.budget = max(args.max_prefill_tokens, self.context_len)
        self.stats = {
            "num_retractions": 0,
            "num_preemptions": 0,  # background requests retracted for online ones
            "num_prompt_tokens": 0,
            "num_cached_tokens": 0,
            "num_generated_tokens": 0,
            "num_finished_reqs": 0,
            "num_forward_steps": 0,
            "num_step_errors": 0,
            "num_cascade_steps": 0,  # decode steps that shared a prefix (cascade attention)
            "num_spec_draft_tokens": 0,  # speculative decoding: drafts proposed, accepted
            "num_spec_accepted_tokens": 0,
            # Overlap scheduling: decode steps launched before the previous step was processed.
            "num_lookahead_steps": 0,
            "num_jump_forward_tokens": 0,  # grammar-forced tokens fed in one extend (#10)
            "num_paused_steps": 0,  # batch-only steps paused between layers for online work
        }
        self.sessions = SessionManager(  # sessions and /extend conversations
            kv, self.context_len, added_bos(self.tokenizer),
            args.session_idle_timeout,
        )  # fmt: skip
        self.inflight: Optional[InflightStep] = None  # what the current step touched
        self.clock: Callable[[], float] = time.monotonic  # tests set their own
        self.last_online = float("-inf")  # when a step with online work last ran
        # When step() last began: time.monotonic() (as Req.arrival) and thread CPU time.
        self.step_started = self.step_cpu = 0.0
        # Overlap scheduling (engine/overlap.py): a launched decode step not yet processed.
        self.overlap = overlap_enabled(args, runner)
        self.pending: Optional[PendingStep] = None
        # Pausable background steps (engine/pausing.py): the event loop sets `online_arrived`
        # (None: steps run whole); at most one step is paused at a time.
        self.online_arrived: Optional[Callable[[], bool]] = None
        self.paused: Optional[PausedStep] = None
        # /pause_generation: the event loop runs no step (a step or lookahead in flight waits
        # where it is, with its KV) until /continue_generation.
        self.generation_paused = False
        self.speculator = (
            NgramSpeculator(args.speculative_num_draft_tokens)
            if args.speculative_algorithm == "NGRAM"
            else None
        )

    # -- requests -------------------------------------------------------------------------
    def add_request(self, msg: ipc.TokenizedGenerateReq) -> list[ipc.ReqUpdate]:
        """Queue a request; a refused one (bad session reference) is answered at once."""
        req = Req(msg, self.eos_token_ids, self.context_len)
        if msg.session_params is not None:
            req.finish_reason = self.sessions.attach(req, msg.session_params)
            if req.finish_reason is not None:
                return [self._update(req)]
        if self.grammar is not None and self.grammar.is_constrained(req):
            self.grammar.add(req)  # waits for its grammar outside the batch
        else:
            self.waiting.append(req)
        return []

    def abort(self, rid: str) -> list[ipc.ReqUpdate]:
        updates: list[ipc.ReqUpdate] = []
        if self.paused is not None and self.paused.holds(rid):
            try:  # finish its step, then abort as usual
                updates = self._resume(pausable=False)
            except Exception as e:  # noqa: BLE001 - as a failing step in the loop
                logger.exception("a resumed scheduler step failed; failing its requests")
                updates = self.fail_step(e)
        return updates + self._abort(rid)

    def _abort(self, rid: str) -> list[ipc.ReqUpdate]:
        pending = self.grammar.remove(rid) if self.grammar is not None else None
        if pending is not None:
            return [self._finish_aborted(pending, "aborted by the caller")]
        for req in list(self.waiting):
            if req.rid == rid:
                self.waiting.remove(req)
                return [self._finish_aborted(req, "aborted by the caller")]
        for req in [*self.running, *([self.chunked] if self.chunked else [])]:
            if req.rid == rid:
                if req is self.chunked:
                    self.chunked = None
                else:
                    self.running.remove(req)
                self.kv.release(req)
                return [self._finish_aborted(req, "aborted by the caller")]
        return []

    def _finish_aborted(self, req: Req, message: str) -> ipc.ReqUpdate:
        req.finish_reason = FinishReason(type="abort", message=message)
        return self._update(req)

    def is_idle(self) -> bool:
        compiling = self.grammar is not None and bool(self.grammar.pending)
        busy = (
            self.waiting
            or self.running
            or self.chunked is not None
            or self.pending is not None
            or self.paused is not None
        )
        return not busy and not compiling

    def _settle_lookahead(self) -> None:
        """A lookahead step whose requests have all finished holds nothing but KV slots to give
        back: settle it now, so that a flush or weight update right after the last reply (before
        the loop's next step) finds the engine idle."""
        if self.pending is not None and all(r.finished for r in self.pending.reqs):
            self.step()

    def flush_cache(self) -> bool:
        self._settle_lookahead()
        if not self.is_idle() or self.sessions.sessions:  # open sessions hold locked KV
            return False
        self.sessions.drop_conversations()
        self.kv.flush()
        return True

    def update_weights(self, model_path: str) -> tuple[bool, str]:
        """Load new weights (same architecture) while idle; the prefix cache is then stale."""
        self._settle_lookahead()
        if not self.is_idle():
            return False, "requests are running; retry when the engine is idle"
        if self.sessions.sessions:
            return False, "sessions are open; close them first (their KV would be stale)"
        self.sessions.drop_conversations()
        try:
            self.runner.load_weights_from_disk(model_path)
        except (ValueError, OSError) as e:
            return False, f"Failed to update weights: {e}"
        self.kv.flush()
        return True, "Succeeded to update model weights."

    def load(self) -> dict[str, Any]:
        size = self.kv.size()
        available, evictable = self.kv.available(), self.kv.evictable()
        used = size - available - evictable
        prompt = self.stats["num_prompt_tokens"]
        return {
            "num_running_reqs": len(self.running) + (1 if self.chunked else 0)
            + (len(self.paused.batch) if self.paused else 0),
            "num_waiting_reqs": len(self.waiting),
            "num_used_tokens": used,
            "token_usage": used / size if size else 0.0,
            "kv_size": size,
            "kv_available": available,
            "kv_evictable": evictable,
            "kv_cached": self.kv.cached(),
            "cache_hit_rate": self.stats["num_cached_tokens"] / prompt if prompt else 0.0,
            "new_token_ratio": self.new_token_ratio,
            **self.stats,
        }

    # -- one step -------------------------------------------------------------------------
    def step(self) -> list[ipc.ReqUpdate]:
        """Schedule and run one forward; return the updates to send (maybe none)."""
        self.step_started, self.step_cpu = time.monotonic(), time.thread_time()
        if self.pending is not None:
            return overlap_step(self)
        if self.paused is not None and not has_online_work(self.waiting, self.running, self.chunked):
            return self._resume()
        updates: list[ipc.ReqUpdate] = []
        if self.grammar is not None and self.grammar.pending:
            idle = not self.waiting and not self.running and self.chunked is None
            ready, failed = self.grammar.ready(block=idle)
            self.waiting.extend(ready)
            updates.extend(self._finish_aborted(r, msg) for r, msg in failed)
        self._make_room_for_decodes()
        online = has_online_work(self.waiting, self.running, self.chunked)
        cap = None
        if online:
            self.last_online = self.clock()
        else:
            cap = background_step_cap(self.clock(), self.last_online,
                                      self.args.online_recent_window,
                                      self.args.background_tokens_after_online)  # fmt: skip
        if online:
            self.stats["num_preemptions"] += preempt_for_online(
                self.waiting, self.running, self.chunked, self.kv,
                self.args.max_running_requests, self.budget, self.new_token_ratio, self._retract,
            )  # fmt: skip
        budget = self.budget
        if not online and not self.is_encoder:  # encoders take whole prompts: no smaller cap
            budget = background_prefill_budget(budget, self.args.background_prefill_size)
            if cap is not None:  # decode rows first; at least one token so a chunk moves on
                budget = max(1, min(budget, cap - len(self.running)))
        if self.waiting or self.chunked is not None:
            # A paused step's lines hold KV (counted) but no request slot here: they would be
            # preempted for this online work, so it may run beside them (rows allowing).
            paused = self.paused.batch if self.paused is not None else []
            reserved = self._decode_tokens() + sum(
                headroom(r, self.new_token_ratio) for r in (*self.running, *paused)
            )
            free = self.args.max_running_requests - len(self.running) - (1 if self.chunked else 0)
            order_waiting(self.waiting, self.args.schedule_policy, self.kv)
            plan = plan_prefill(
                self.waiting, self.chunked, self.kv, budget, reserved, free, self.new_token_ratio,
                fair=self.args.chunked_prefill_policy == "fair", online_only=online,
            )  # fmt: skip
        else:  # only decodes: nothing to admit, so no reservation, ordering or planning
            plan = PrefillPlan(budget=budget)
        nothing_runs = not self.running and self.paused is None  # so nothing will free memory
        if plan.stalled is not None and nothing_runs:
            # Nothing else will free memory: this sequence can never fit.
            self.chunked = None
            self.kv.release(plan.stalled)
            updates.append(
                self._finish_aborted(plan.stalled, "the request does not fit in the KV pool")
            )
            return updates
        if plan.stalled is not None:
            plan.chunked = plan.stalled  # still unfinished; retried next step
        if not plan.reqs and nothing_runs and self.waiting:
            # Nothing runs: admit the head without decode headroom, or reject what cannot fit.
            plan = plan_prefill(self.waiting, None, self.kv, budget, 0, 1, 0.0)
            if not plan.reqs:
                head = self.waiting.popleft()
                updates.append(self._finish_aborted(head, "the prompt does not fit in the KV pool"))
                return updates
        if self.is_encoder:
            keep_whole_prompts(self, plan)
        if self.speculator is not None and not plan.reqs and plan.chunked is None and self.running:
            spec = self.speculator.step(self)
            if spec is not None:
                return updates + spec
        # Background decodes sit out a step with online work (they keep their KV).
        online_step = any(not r.background for r in (*plan.reqs, *self.running))
        if self.paused is not None and not online_step:  # the online work did not fit yet
            return updates + self._resume()
        decoding = [r for r in self.running if not r.background or not online_step]
        if cap is not None and not online_step:  # within the cap after this step's prefill
            rows = max(0, cap - sum(r.extend_len for r in plan.reqs))
            if len(decoding) > rows:
                decoding, self.running = take_background_rows(self.running, rows)
        batch = plan.reqs + decoding
        if not batch:
            return updates
        for r in decoding:
            r.extend_len = r.seq_len - r.kv_len  # 1, or more after a grammar jump-forward
        self.inflight = InflightStep(batch)
        slots = self.kv.alloc(sum(r.extend_len for r in batch))
        if slots is None:  # accounting is conservative, so this means a bug, not a full pool
            raise RuntimeError("KV allocation failed after admission checks")
        self.inflight.slots = slots
        self.chunked = plan.chunked
        maybe_inject_fault(batch, self.tokenizer)
        fb = build_forward_batch(batch, slots, self.kv)
        fb.token_type_ids = token_types(batch)
        if fb.is_decode and not self.args.disable_cascade_attention:
            fb.cascade = shared_prefix_groups(
                batch, self.kv.req_to_token, self.args.cascade_min_prefix
            )
            self.stats["num_cascade_steps"] += fb.cascade is not None
        info = (self.no_sampling if self.no_sampling is not None
                else build_sampling_info(batch, self.vocab_size))  # fmt: skip
        if self.grammar is not None:
            self.grammar.apply(batch, info, self.vocab_size)
        extra = input_logits_rows(batch, fb)
        if online_step or not self._can_pause():
            return updates + self._finish_step(batch, fb, info, extra, self.runner.forward(fb),
                                               online_step)  # fmt: skip
        chunked = self.chunked if any(r is self.chunked for r in batch) else None
        step = PausedStep(batch, decoding, chunked, self.inflight, fb, info, extra)
        if self.online_arrived is not None and self.online_arrived():
            # Online work arrived while this step was being set up: it gives way before its
            # first layer (set-up kept; on resume it starts there and pauses only between
            # layers, so a resumed step always moves on).
            self._pause(step)
            return updates
        return updates + self._run_pausable(step, pausable=True)

    def _can_pause(self) -> bool:
        return (
            self.online_arrived is not None
            and not self.overlap
            and bool(getattr(self.runner, "can_pause", False))
        )

    def _run_pausable(self, step: PausedStep, pausable: bool) -> list[ipc.ReqUpdate]:
        """Run a batch-only step (from where it paused, if it did); it pauses if online work
        arrives between layers (`pausable`)."""
        should_pause = self.online_arrived if pausable else None
        out = self.runner.forward_pausable(step.fb, should_pause, step.forward)
        if isinstance(out, PausedForward):
            step.forward = out
            self._pause(step)
            return []
        updates = self._finish_step(step.batch, step.fb, step.info, step.extra, out, False)
        chunk = step.chunked
        if chunk is not None and chunk is not self.chunked and chunk.kv_len < chunk.seq_len:
            self._requeue(chunk)  # an online prompt holds the chunked place now
            self.stats["num_preemptions"] += 1
        # Online requests admitted while it was paused may have taken its lines' slots.
        while len(self.running) + (self.chunked is not None) > self.args.max_running_requests:
            background = [r for r in self.running if r.background]
            if not background:
                break
            self._retract(max(background, key=lambda r: r.arrival))
            self.stats["num_preemptions"] += 1
        return updates

    def _pause(self, step: PausedStep) -> None:
        """Take the step's requests out of the queues (they keep their KV) until _resume."""
        self.paused = step
        paused = {id(r) for r in step.decodes}
        self.running = [r for r in self.running if id(r) not in paused]
        if step.chunked is not None and step.chunked is self.chunked:
            self.chunked = None
        self.inflight = None
        self.stats["num_paused_steps"] += 1

    def _resume(self, pausable: bool = True) -> list[ipc.ReqUpdate]:
        """Put the paused step's requests back and run its remaining layers."""
        step = self.paused
        assert step is not None
        self.paused = None
        self.running.extend(step.decodes)
        if step.chunked is not None and self.chunked is None:
            self.chunked = step.chunked
        self.inflight = step.inflight
        return self._run_pausable(step, pausable and self._can_pause())

    def _finish_step(
        self,
        batch: list[Req],
        fb: ForwardBatch,
        info: SamplingBatchInfo,
        extra: Optional[tuple[torch.Tensor, list[Span]]],
        out: Any,
        online_step: bool,
    ) -> list[ipc.ReqUpdate]:
        """After the forward: sample and process the step's results (or defer them)."""
        if online_step:  # when it ended: the window after online work starts now
            self.last_online = self.clock()
        if getattr(self.runner, "is_pooling", False):  # pooling models: no sampling (#8)
            return finish_pooled(self, batch, out)
        logits = out if isinstance(out, torch.Tensor) else out.next_token_logits
        if extra is not None:
            sample_rows, spans = extra
            collect_input_logprobs(logits, spans)
            logits = logits[sample_rows]
        attach_label_logprobs(batch, logits)  # /v1/score (#8)
        sample = self.runner.sample(logits, info)
        self.stats["num_forward_steps"] += 1
        self.new_token_ratio = max(
            MIN_NEW_TOKEN_RATIO, self.new_token_ratio - NEW_TOKEN_RATIO_DECAY
        )
        updates: list[ipc.ReqUpdate] = []
        if can_defer(self, batch, fb, extra):  # processed by the next step(), after a lookahead
            assert self.inflight is not None and self.inflight.slots is not None
            defer(self, batch, self.inflight.slots, sample)
        else:
            updates.extend(self._process_results(batch, sample))
        self.inflight = None
        return updates

    def fail_step(self, exc: BaseException) -> list[ipc.ReqUpdate]:
        """A step raised: fail its requests (all requests if it failed before it had chosen
        them), give back their KV, and keep the scheduler serving the others."""
        self.stats["num_step_errors"] += 1
        step, self.inflight = self.inflight, None
        if step is None:
            chunked = [self.chunked] if self.chunked is not None else []
            step = InflightStep([*self.running, *chunked, *self.waiting])
        victims = {id(r) for r in step.reqs}
        self.running = [r for r in self.running if id(r) not in victims]
        self.waiting = deque(r for r in self.waiting if id(r) not in victims)
        if self.chunked is not None and id(self.chunked) in victims:
            self.chunked = None
        free_step_kv(step, self.kv)
        message = f"internal error while running the batch: {type(exc).__name__}: {exc}"
        updates = []
        for req in step.reqs:
            req.finish_reason = FinishReason(type="abort", message=message)
            up = self._update(req)
            up.error_status = 500
            updates.append(up)
        return updates

    def _decode_tokens(self) -> int:
        """KV slots the running requests need this step: one each, plus forced tokens."""
        return sum(r.seq_len - r.kv_len for r in self.running)

    def _make_room_for_decodes(self) -> None:
        """Every running request needs its slots this step: evict, then retract the newest
        (background requests first)."""
        while self.running and self.kv.available() + self.kv.evictable() < self._decode_tokens():
            victim = max(self.running, key=lambda r: (r.background, r.arrival))
            self._retract(victim)
            self.stats["num_retractions"] += 1
            self.new_token_ratio = min(1.0, self.new_token_ratio + 0.1)
            logger.info("KV pool full: retracted %s (%d running)", victim.rid, len(self.running))

    def _retract(self, req: Req) -> None:
        """Take a running request (or the chunk) out, give back its KV (its computed prefix
        stays in the radix tree) and queue it again; it is recomputed from prompt + output."""
        if req is self.chunked:
            self.chunked = None
        else:
            self.running.remove(req)
        self._requeue(req)

    def _requeue(self, req: Req) -> None:
        """Give back `req`'s KV (its computed prefix stays in the radix tree) and queue it
        again at the front; it is recomputed from prompt + output."""
        self.kv.release(req)
        req.reset_for_retract()
        self.waiting.appendleft(req)

    def _process_results(self, batch: list[Req], sample: SampleOutput) -> list[ipc.ReqUpdate]:
        ids = sample.next_token_ids.tolist()
        lps = sample.logprobs.tolist() if sample.logprobs is not None else None
        top_v = sample.top_logprobs_vals.tolist() if sample.top_logprobs_vals is not None else None
        top_i = sample.top_logprobs_ids.tolist() if sample.top_logprobs_ids is not None else None
        updates = []
        still_running = []
        running_ids = {id(r) for r in self.running}
        for i, req in enumerate(batch):
            was_prefill = id(req) not in running_ids
            req.kv_len += req.extend_len
            if self.inflight is not None:
                self.inflight.advanced.add(id(req))
            if req.kv_len < req.seq_len:  # an unfinished chunk: nothing sampled
                self.kv.cache_unfinished(req)
                continue
            if was_prefill:
                # The prompt goes into the radix tree now, not at the end: requests admitted
                # later match it, and ones prefilled in the same step (a cold shared system
                # prompt) get its slots in place of their copies, so decode shares them
                # (cascade groups need shared slots).
                self.kv.cache_unfinished(req)
            if was_prefill and req.num_retractions == 0 and not req.output_ids:
                self.stats["num_prompt_tokens"] += len(req.origin_input_ids)
                self.stats["num_cached_tokens"] += req.cached_tokens
                if not req.background and logger.isEnabledFor(logging.DEBUG):
                    self._log_first_token(req)
            req.output_ids.append(int(ids[i]))
            if req.grammar is not None:
                GrammarManager.accept(req, int(ids[i]), self.tokenizer)
            self.stats["num_generated_tokens"] += 1
            if req.return_logprob and lps is not None:
                req.logprobs.append(float(lps[i]))
                k = req.top_logprobs_num
                if k > 0 and top_v is not None and top_i is not None:
                    req.top_logprobs.append(top_v[i][:k])
                    req.top_ids.append(top_i[i][:k])
            req.check_finished(self.tokenizer)
            if req.grammar is not None and self.grammar is not None:
                self.stats["num_jump_forward_tokens"] += self.grammar.after_sample(req, self.tokenizer)
            if req.finished:
                self.kv.release(req)
                self.stats["num_finished_reqs"] += 1
            else:
                still_running.append(req)
            new = len(req.output_ids) - req.sent_len
            if req.finished or (req.stream and new >= req.stream_interval):
                updates.append(self._update(req))
        keep = {id(r) for r in still_running}
        sat_out = {id(r) for r in self.running} - {id(r) for r in batch}
        keep |= sat_out  # running requests that were not in this step (background yielding)
        self.running = [r for r in self.running if id(r) in keep] + [
            r for r in still_running if id(r) not in running_ids
        ]
        return updates

    def _log_first_token(self, req: Req) -> None:
        """Where an online request's time to first token went (benchmarks/results/batch.md):
        queued (received -> its prefill step began) and that step's own time (wall and this
        thread's CPU time: on a loaded host the difference is time spent descheduled)."""
        wall, cpu = time.monotonic() - self.step_started, time.thread_time() - self.step_cpu
        lines = sum(r.background for r in self.running) + (len(self.paused.batch) if self.paused else 0)
        logger.debug("first token of %s: queued %.1f ms, prefill step %.1f ms (cpu %.1f ms), "
                     "%d batch lines", req.rid, (self.step_started - req.arrival) * 1e3,
                     wall * 1e3, cpu * 1e3, lines)  # fmt: skip

    def _update(self, req: Req) -> ipc.ReqUpdate:
        if req.finished:  # once per request, after its KV went back to the tree
            self.sessions.on_finished(req)
        start = req.sent_len
        req.sent_len = len(req.output_ids)
        up = ipc.ReqUpdate(
            rid=req.rid,
            new_ids=req.output_ids[start:],
            finished=req.finished,
            finish_reason=req.finish_reason,
            prompt_tokens=len(req.origin_input_ids),
            cached_tokens=req.cached_tokens,
            pooled=req.pooled,
            spec_verify_ct=req.spec_verify_ct,
            spec_draft_tokens=req.spec_draft_tokens,
            spec_accepted_tokens=req.spec_accepted_tokens,
        )
        if req.return_logprob:
            if req.input_lp_from is not None and not req.input_lp_sent and req.output_ids:
                req.input_lp_sent = True
                up.input_logprobs = req.input_logprobs
                if req.top_logprobs_num > 0:
                    up.input_top_ids = req.input_top_ids
                    up.input_top_logprobs = req.input_top_logprobs
            up.logprobs = req.logprobs[start:]
            if req.top_logprobs_num > 0:
                up.top_ids = req.top_ids[start:]
                up.top_logprobs = req.top_logprobs[start:]
        return up


def build_scheduler(args: ServerArgs) -> Scheduler:
    from radixserve.cache.radix_cache import RadixCache
    from radixserve.engine.model_runner import ModelRunner

    if args.page_size != 1:
        raise ValueError("the scheduler supports --page-size 1 only")
    runner = ModelRunner(args)
    allocator = make_allocator(int(runner.max_total_tokens))
    # Encoders (#8) keep no KV to share: no prefix cache.
    no_tree = args.disable_radix_cache or runner.model_config.is_encoder
    tree = None if no_tree else RadixCache(allocator, 1)
    kv = KVManager(allocator, tree, runner.req_to_token_pool)
    return Scheduler(args, runner, kv)


def _model_info(s: Scheduler) -> dict[str, Any]:
    cfg = s.runner.model_config
    plain = {k: v for k, v in vars(cfg).items() if isinstance(v, (int, float, str, bool, list))}
    return {
        "model_config": plain,
        "vocab_size": s.vocab_size,
        "context_len": s.context_len,
        "eos_token_ids": s.eos_token_ids,
        "max_total_tokens": int(s.runner.max_total_tokens),
        "max_running_requests": s.args.max_running_requests,
        "pid": os.getpid(),
    }


def run_scheduler_process(args: ServerArgs, in_addr: str, out_addr: str) -> None:
    """Entry point of the spawned process."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s [scheduler] %(levelname)s %(message)s"
    )
    torch.set_num_threads(args.num_threads or os.cpu_count() or 1)
    # tqdm (weight loading) would otherwise create a multiprocessing semaphore here; this
    # process ends by SIGTERM, so it would be reported as leaked by the resource tracker.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    ctx = zmq.Context()
    recv = ipc.make_socket(ctx, zmq.PULL, in_addr, bind=False)
    send = ipc.make_socket(ctx, zmq.PUSH, out_addr, bind=False)
    try:
        random.seed(args.random_seed)
        torch.manual_seed(args.random_seed)
        sched = build_scheduler(args)
        trim_heap()  # what loading and the grammar backend's set-up freed
    except Exception as e:
        send.send(ipc.encode(ipc.SchedulerFailed(f"{type(e).__name__}: {e}")))
        logger.error("scheduler failed to start:\n%s", traceback.format_exc())
        time.sleep(0.2)  # let the message leave before the socket closes
        raise SystemExit(1) from e
    logger.info("ready: max_total_tokens=%d", sched.runner.max_total_tokens)
    send.send(ipc.encode(ipc.Ready(_model_info(sched))))
    while True:  # steps guard themselves; this catches a message that could not be handled
        try:
            event_loop(sched, recv, send)
            return
        except Exception:  # noqa: BLE001 - keep serving the other requests
            logger.exception("the scheduler loop failed outside a step; continuing")


def event_loop(sched: Scheduler, recv: zmq.Socket[Any], send: zmq.Socket[Any]) -> None:
    parent = os.getppid()
    inbox = Inbox(recv)
    sched.online_arrived = inbox.online_arrived
    idle_trim = IdleTrim(IDLE_TRIM_DELAY_S)
    profiler = StepProfiler()
    while True:
        updates: list[ipc.ReqUpdate] = []
        # Block only when idle; with work, just drain what has arrived.
        waits = sched.is_idle() or sched.generation_paused
        timeout = idle_trim.poll_timeout_ms(1000) if waits else 0
        while inbox.poll(timeout):
            timeout = 0
            msg = inbox.recv()
            if isinstance(msg, ipc.TokenizedGenerateReq):
                updates.extend(sched.add_request(msg))
            elif isinstance(msg, ipc.AbortReq):
                updates.extend(sched.abort(msg.rid))
            elif isinstance(msg, ipc.FlushCacheReq):
                send.send(ipc.encode(ipc.QueryResult(msg.query_id, sched.flush_cache())))
            elif isinstance(msg, ipc.UpdateWeightsReq):
                result = list(sched.update_weights(msg.model_path))
                send.send(ipc.encode(ipc.QueryResult(msg.query_id, result)))
            elif isinstance(msg, ipc.GetLoadReq):
                send.send(ipc.encode(ipc.QueryResult(msg.query_id, sched.load())))
            elif isinstance(msg, ipc.SessionCtlReq):
                result = sched.sessions.control(msg)
                send.send(ipc.encode(ipc.QueryResult(msg.query_id, result)))
            elif isinstance(msg, ipc.ProfileReq):
                send.send(ipc.encode(ipc.QueryResult(msg.query_id, profiler.control(msg))))
            elif isinstance(msg, ipc.PauseGenerationReq):
                sched.generation_paused = msg.paused
                send.send(ipc.encode(ipc.QueryResult(msg.query_id, True)))
        sched.sessions.expire()
        if os.getppid() != parent:
            logger.info("parent process exited; stopping")
            return
        stepped = not sched.is_idle() and not sched.generation_paused
        if stepped:
            try:
                updates.extend(sched.step())
            except Exception as e:  # noqa: BLE001 - one bad batch must not end the engine
                logger.exception("a scheduler step failed; failing its requests")
                updates.extend(sched.fail_step(e))
            profiler.after_step()
        if updates:
            send.send(ipc.encode(ipc.BatchOut(updates)))
        if stepped:  # the work done leaves its freed temporaries; RSS drops after a delay
            idle_trim.after_step(sched.is_idle())
        elif sched.is_idle():
            idle_trim.maybe_trim()
