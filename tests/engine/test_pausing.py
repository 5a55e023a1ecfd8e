"""Pausable background steps (engine/pausing.py): a batch-only step stops between layers when
an online request arrives, the online work runs first, and the step resumes with exactly the
tokens it would have produced; aborts while paused give back every KV slot.

Scheduler logic runs against a two-"layer" version of test_scheduler_logic.py's KV-reading
model (any lost or reused slot changes the output); the last test runs the real engine.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Optional, Union

import pytest
import torch

from radixserve.args import ServerArgs
from radixserve.cache.radix_cache import RadixCache
from radixserve.engine.kv_manager import KVManager, make_allocator
from radixserve.engine.scheduler import Scheduler, build_scheduler
from radixserve.forward_batch import ForwardBatch, PausedForward

from .test_background_priority import Recorder, check_exact, fill_with_background, submit
from .test_scheduler_logic import KVReadingRunner, all_free, expected, prompts


class TwoLayerRunner(KVReadingRunner):
    """Layer 0 stores the fed ids in `kv`, layer 1 in `kv2`; a step may pause between them
    (as ModelRunner.forward_pausable). Every slot a step reads must hold the same token in
    both layers, and a resumed step must find its layer-0 writes intact."""

    can_pause = True

    def __init__(self, num_slots: int, rows: int, context_len: int) -> None:
        super().__init__(num_slots, rows, context_len)
        self.kv2 = self.kv.clone()
        self.forwards: list[tuple[int, bool]] = []  # (batch size, resumed) of each finished one

    def forward(self, fb: ForwardBatch) -> torch.Tensor:
        out = self.forward_pausable(fb, None)
        assert isinstance(out, torch.Tensor)
        return out

    def forward_pausable(
        self, fb: ForwardBatch, should_pause: Any, resume: Optional[PausedForward] = None
    ) -> Union[torch.Tensor, PausedForward]:
        if resume is None:
            self.kv[fb.out_cache_loc] = fb.input_ids
            if should_pause is not None and should_pause():
                return PausedForward(fb, fb.input_ids, fb.input_ids, 1)
        assert torch.equal(self.kv[fb.out_cache_loc], fb.input_ids), "slots reused while paused"
        self.kv2[fb.out_cache_loc] = fb.input_ids
        table = self.req_to_token_pool.req_to_token
        for i in range(fb.batch_size):
            read = table[int(fb.req_pool_indices[i]), : int(fb.seq_lens[i])].long()
            assert torch.equal(self.kv[read], self.kv2[read]), "the layers disagree"
        self.forwards.append((fb.batch_size, resume is not None))
        return super().forward(fb)


def make_pausable(num_slots: int = 2048, **kw: Any) -> Scheduler:
    """12 request slots, 16 rows (as ModelRunner's spare rows: room for online requests)."""
    kw.setdefault("grammar_backend", "none")
    args = ServerArgs(max_running_requests=12, **kw)
    runner = TwoLayerRunner(num_slots, 16, 256)
    alloc = make_allocator(num_slots)
    return Scheduler(args, runner, KVManager(alloc, RadixCache(alloc), runner.req_to_token_pool))


class Arrivals:
    """Scheduler.online_arrived for tests: True at the ask `pause_at` names. A step asks first
    after its set-up (BEFORE_FORWARD), then after each layer (AFTER_LAYER_0: the first)."""

    BEFORE_FORWARD, AFTER_LAYER_0 = 1, 2

    def __init__(self) -> None:
        self.countdown = 0

    def pause_at(self, ask: int) -> None:
        self.countdown = ask

    def __call__(self) -> bool:
        self.countdown -= 1
        return self.countdown == 0


def forwards(s: Scheduler) -> list[tuple[int, bool]]:
    return s.runner.forwards  # type: ignore[attr-defined, no-any-return]


def test_batch_step_pauses_for_an_online_request_and_resumes_exactly() -> None:
    s = make_pausable()
    rec = Recorder(s)
    lines = prompts(16, seed=30)
    fill_with_background(rec, lines, 30)
    arrivals = Arrivals()
    s.online_arrived = arrivals
    rec.step()
    assert s.paused is None, "nothing arrived: the step ran whole"
    arrivals.pause_at(Arrivals.AFTER_LAYER_0)
    assert rec.step() == [] and s.paused is not None
    assert s.stats["num_paused_steps"] == 1 and not s.running, "its 12 lines are out of the queue"
    online_prompt = prompts(1, seed=31)[0]
    submit(s, "on", online_prompt, 5, background=False)
    assert rec.steps_until("on", True) == 1
    rec.steps_until("on", False)
    assert forwards(s)[-5:] == [(1, False)] * 5, "the online request ran alone, first"
    assert s.paused is not None
    rec.step()
    assert s.paused is None and forwards(s)[-1] == (12, True), "then the step resumed"
    rec.drain()
    assert rec.ids["on"] == expected(online_prompt, 5)
    check_exact(rec, lines, 30)
    assert all_free(s)


def test_batch_step_pauses_before_its_forward_and_an_abort_frees_every_slot() -> None:
    """Online work that arrived while a batch step was being set up: the step gives way before
    its first layer (its KV slots allocated, none written), runs from the start when resumed,
    and an abort of one of its lines then finishes it and gives back every slot."""
    s = make_pausable()
    rec = Recorder(s)
    lines = prompts(12, seed=40)
    fill_with_background(rec, lines, 30)
    arrivals = Arrivals()
    s.online_arrived = arrivals
    done = len(forwards(s))
    arrivals.pause_at(Arrivals.BEFORE_FORWARD)
    assert rec.step() == [] and s.paused is not None and s.paused.forward is None
    assert len(forwards(s)) == done and not s.running, "no layer ran; the lines wait"
    online_prompt = prompts(1, seed=41)[0]
    submit(s, "on", online_prompt, 3, background=False)
    rec.steps_until("on", False)
    assert forwards(s)[done:] == [(1, False)] * 3, "the online request ran alone, first"
    rec.step()
    assert s.paused is None and forwards(s)[-1] == (12, False), "resumed from its first layer"
    arrivals.pause_at(Arrivals.BEFORE_FORWARD)
    rec.step()
    paused = s.paused
    assert paused is not None and paused.forward is None
    victim = paused.decodes[0].rid
    ups = s.abort(victim)
    assert s.paused is None and any(u.rid == victim and u.finished for u in ups)
    rec.drain()
    assert rec.ids["on"] == expected(online_prompt, 3)
    for i, p in enumerate(lines):
        if f"bg{i}" != victim:
            assert rec.ids[f"bg{i}"] == expected(p, 30), i
    assert all_free(s)


def test_abort_while_paused_gives_back_every_slot() -> None:
    s = make_pausable(background_prefill_size=8)
    arrivals = Arrivals()
    s.online_arrived = arrivals
    rec = Recorder(s)
    lines = prompts(6, seed=32)
    for i, p in enumerate(lines):
        submit(s, f"bg{i}", p, 12, background=True)
    arrivals.pause_at(Arrivals.AFTER_LAYER_0)
    rec.step()  # the first prefill (a chunk of bg0) pauses
    assert s.paused is not None and s.paused.chunked is not None and s.chunked is None
    ups = s.abort("bg0")  # its step finishes, then it is aborted
    assert s.paused is None and ups[-1].rid == "bg0" and ups[-1].finished
    for _ in range(6):
        rec.step()
    arrivals.pause_at(Arrivals.AFTER_LAYER_0)
    rec.step()  # decodes (and a chunk) pause
    paused = s.paused
    assert paused is not None and paused.decodes
    submit(s, "on", prompts(1, seed=33)[0], 8, background=False)
    rec.step()  # the online prompt runs
    victim = paused.decodes[0].rid
    ups = s.abort(victim)
    assert s.paused is None and any(u.rid == victim and u.finished for u in ups)
    s.abort("on")
    rec.drain()
    for i, p in enumerate(lines):
        if f"bg{i}" != victim and i:
            assert rec.ids[f"bg{i}"] == expected(p, 12), i
    assert all_free(s)


def test_paused_prompt_goes_back_to_the_queue_when_an_online_prompt_took_the_chunk() -> None:
    s = make_pausable(chunked_prefill_size=8, background_prefill_size=8)
    arrivals = Arrivals()
    s.online_arrived = arrivals
    rec = Recorder(s)
    short = prompts(1, seed=34)[0][:5]
    long = prompts(1, seed=35, shared=60)[0]
    submit(s, "bg1", short, 10, background=True)
    rec.step()
    submit(s, "bg0", long, 10, background=True)
    arrivals.pause_at(Arrivals.AFTER_LAYER_0)
    rec.step()  # bg1's decode and bg0's first chunk pause
    assert s.paused is not None and s.paused.chunked is not None
    online_prompt = prompts(1, seed=36, shared=30)[0]
    submit(s, "on", online_prompt, 4, background=False)
    rec.step()
    assert s.chunked is not None and s.chunked.rid == "on", "the online prompt is chunked"
    s.abort("bg1")  # finishes the paused step: bg0 cannot be the chunk, so it is queued
    assert any(r.rid == "bg0" for r in s.waiting)
    rec.drain()
    assert rec.ids["on"] == expected(online_prompt, 4)
    assert rec.ids["bg0"] == expected(long, 10)
    assert all_free(s)


def test_online_requests_beside_a_paused_step_keep_the_request_limit_after_it() -> None:
    s = make_pausable()
    rec = Recorder(s)
    lines = prompts(12, seed=38)
    fill_with_background(rec, lines, 30)
    arrivals = Arrivals()
    s.online_arrived = arrivals
    arrivals.pause_at(Arrivals.AFTER_LAYER_0)
    rec.step()
    online = prompts(2, seed=39)
    for i, p in enumerate(online):
        submit(s, f"on{i}", p, 6, background=False)
    rec.step()  # both run beside the 12 paused lines (spare rows), nothing retracted
    assert len(s.running) == 2 and s.stats["num_preemptions"] == 0
    # Aborting a paused line resumes its step with the online requests still running: 12 + 2
    # running, so the two newest lines are retracted (back to the limit), then bg3 is aborted.
    s.abort("bg3")
    assert len(s.running) == 11 and s.stats["num_preemptions"] == 2
    assert {r.rid for r in s.waiting} == {"bg10", "bg11"}
    rec.drain()
    for i, p in enumerate(online):
        assert rec.ids[f"on{i}"] == expected(p, 6)
    for i, p in enumerate(lines):
        if i != 3:
            assert rec.ids[f"bg{i}"] == expected(p, 30), i
    assert all_free(s)


def test_steps_run_whole_without_an_inbox() -> None:
    s = make_pausable()
    rec = Recorder(s)
    lines = prompts(4, seed=37)
    for i, p in enumerate(lines):
        submit(s, f"bg{i}", p, 6, background=True)
    rec.drain()
    check_exact(rec, lines, 6)
    assert s.stats["num_paused_steps"] == 0


def _engine_lines(model_dir: str, pause_every: int, online: bool) -> dict[str, list[int]]:
    """Greedy outputs of six batch lines on the real engine; every `pause_every`-th layer
    boundary reports online work (0: never), and with `online` an online request is submitted
    while a step is paused."""
    args = ServerArgs(model_path=model_dir, dtype="float32", max_total_tokens=4096,
                      max_running_requests=8, num_threads=1, online_recent_window=0.0,
                      background_prefill_size=16)  # fmt: skip
    s = build_scheduler(args)
    calls = itertools.count(1)
    if pause_every:
        s.online_arrived = lambda: next(calls) % pause_every == 0
    rng = random.Random(5)
    for i in range(6):
        ids = [rng.randrange(3, 40_000) for _ in range(rng.randrange(4, 30))]
        submit(s, f"bg{i}", ids, 10, background=True)
    out: dict[str, list[int]] = {}
    submitted = 0
    for _ in range(1000):
        if s.is_idle():
            break
        for up in s.step():
            out.setdefault(up.rid, []).extend(up.new_ids)
        if online and s.paused is not None and submitted < 3:
            submit(s, f"on{submitted}", [5 + submitted, 17, 300, 4000], 4, background=False)
            submitted += 1
    assert s.is_idle()
    assert bool(s.stats["num_paused_steps"]) == bool(pause_every)
    assert submitted == (3 if online else 0)
    return out


def test_real_engine_lines_identical_with_and_without_pauses(tiny_llama_dir: str) -> None:
    whole = _engine_lines(tiny_llama_dir, 0, online=False)
    assert _engine_lines(tiny_llama_dir, 2, online=False) == whole
    with_online = _engine_lines(tiny_llama_dir, 2, online=True)
    assert {k: v for k, v in with_online.items() if k.startswith("bg")} == whole



def _tiny_scheduler(model_dir: str, lines: list[list[int]]) -> Scheduler:
    """The real engine on the tiny model with `lines` submitted as batch lines (6 tokens)."""
    args = ServerArgs(model_path=model_dir, dtype="float32", max_total_tokens=4096,
                      max_running_requests=8, num_threads=1, online_recent_window=0.0,
                      background_prefill_size=64)  # fmt: skip
    s = build_scheduler(args)
    for i, ids in enumerate(lines):
        submit(s, f"bg{i}", ids, 6, background=True)
    return s


def _step(s: Scheduler, out: dict[str, list[int]]) -> None:
    for up in s.step():
        out.setdefault(up.rid, []).extend(up.new_ids)


def _reference_and_fresh(
    model_dir: str, lines: list[list[int]]
) -> tuple[dict[str, list[int]], Scheduler, int, int]:
    """The tokens of `lines` run unpaused, and a fresh engine with `lines` submitted as batch
    lines bg0, bg1, ... (6 tokens), with its free KV slots and request rows before them."""
    unpaused: dict[str, list[int]] = {}
    ref = _tiny_scheduler(model_dir, lines)
    while not ref.is_idle():
        _step(ref, unpaused)
    s = _tiny_scheduler(model_dir, [])
    slots, rows = s.kv.available(), s.kv.free_rows()
    for i, ids in enumerate(lines):
        submit(s, f"bg{i}", ids, 6, background=True)
    return unpaused, s, slots, rows


def test_real_engine_pauses_inside_the_lm_head_and_an_abort_frees_every_slot(
    tiny_llama_dir: str,
) -> None:
    """Pause checks 4 and 15 fall between the LM head's vocabulary slices (a step asks after
    its set-up, after each of its 2 layers, then after each of its 8 slices). The paused step
    holds partial logits; resumed, its lines produce the tokens of an unpaused run; an abort of one of its lines
    finishes it, and every KV slot and request row comes back."""
    rng = random.Random(7)
    lines = [[rng.randrange(3, 40_000) for _ in range(rng.randrange(4, 15))] for _ in range(4)]
    unpaused, s, slots, rows = _reference_and_fresh(tiny_llama_dir, lines)
    asks = itertools.count(1)
    s.online_arrived = lambda: next(asks) in (4, 15)
    out: dict[str, list[int]] = {}
    _step(s, out)  # the prefill of all four pauses in its LM head
    assert s.paused is not None and s.paused.forward is not None
    paused = s.paused.forward
    assert paused.logits is not None and 0 < paused.next_column < paused.logits.shape[1]
    _step(s, out)  # nothing online came: it resumes where it stopped
    assert s.paused is None and s.stats["num_paused_steps"] == 1
    assert len(s.running) == 4 and all(r.output_ids for r in s.running), "first tokens sampled"
    _step(s, out)  # the first decode step pauses in its LM head too
    assert s.paused is not None and s.paused.forward is not None
    assert s.paused.forward.logits is not None
    ups = s.abort("bg2")
    assert s.paused is None and any(u.rid == "bg2" and u.finished for u in ups)
    for _ in range(100):
        if s.is_idle():
            break
        _step(s, out)
    assert s.is_idle() and s.stats["num_paused_steps"] == 2
    for i in (0, 1, 3):
        assert out[f"bg{i}"] == unpaused[f"bg{i}"], i
    assert s.flush_cache()
    assert s.kv.available() == slots and s.kv.free_rows() == rows


@pytest.mark.parametrize("ask", range(1, 12))
def test_real_engine_pause_at_each_check_of_a_step_gives_the_same_tokens(
    tiny_llama_dir: str, ask: int
) -> None:
    """A step asks 11 times: after its set-up (1), after each of its 2 layers (2, 3) and after
    each of its 8 LM head slices (4-11; after the last, all logits are done). Paused at any
    of them in its first decode step and resumed, its lines get the unpaused tokens, and all
    KV comes back."""
    rng = random.Random(11)
    lines = [[rng.randrange(3, 40_000) for _ in range(rng.randrange(4, 15))] for _ in range(3)]
    unpaused, s, slots, rows = _reference_and_fresh(tiny_llama_dir, lines)
    out: dict[str, list[int]] = {}
    _step(s, out)  # the prefill, whole
    asks = itertools.count(1)
    s.online_arrived = lambda: next(asks) == ask
    _step(s, out)
    paused = s.paused
    assert paused is not None, "the first decode step paused"
    vocab = s.vocab_size
    if ask == 1:
        assert paused.forward is None
    elif ask <= 3:
        assert paused.forward is not None and paused.forward.next_layer == ask - 1
        assert paused.forward.logits is None
    else:
        assert paused.forward is not None and paused.forward.logits is not None
        assert (paused.forward.next_column == vocab) == (ask == 11)
    while not s.is_idle():
        _step(s, out)
    assert s.stats["num_paused_steps"] == 1
    assert out == unpaused
    assert s.flush_cache()
    assert s.kv.available() == slots and s.kv.free_rows() == rows
