"""Background (batch API) requests yield to online ones in the scheduler.

Same KV-reading test model as test_scheduler_logic.py: a wrong slot after a retraction or a
step sat out changes the output, so exact outputs show that preempted lines are recomputed,
never lost or sent twice. Latency is counted in scheduler steps (no clocks).
"""

from __future__ import annotations

from typing import Any

import pytest

from radixserve.args import ServerArgs
from radixserve.engine import ipc
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.schedule_policy import headroom
from radixserve.engine.scheduler import Scheduler

from .test_scheduler_logic import all_free, expected, make, prompts


def submit(s: Scheduler, rid: str, ids: list[int], max_new: int, background: bool) -> None:
    p = SamplingParams(max_new_tokens=max_new)
    s.add_request(ipc.TokenizedGenerateReq(rid=rid, input_ids=ids, sampling_params=p,
                                           max_new_tokens=max_new, seed=1,
                                           background=background,
                                           stream=not background))  # fmt: skip


class Recorder:
    """Runs steps, keeps every update and the batch size of every forward."""

    def __init__(self, s: Scheduler) -> None:
        self.s = s
        self.sizes: list[int] = []
        self.ids: dict[str, list[int]] = {}
        self.finished: dict[str, int] = {}  # rid -> finished updates seen
        forward = s.runner.forward

        def recording_forward(fb: Any) -> Any:
            self.sizes.append(int(fb.batch_size))
            return forward(fb)

        s.runner.forward = recording_forward

    def step(self) -> list[ipc.ReqUpdate]:
        ups = self.s.step()
        for up in ups:
            self.ids.setdefault(up.rid, []).extend(up.new_ids)
            self.finished[up.rid] = self.finished.get(up.rid, 0) + up.finished
        return ups

    def drain(self) -> None:
        for _ in range(10_000):
            if self.s.is_idle():
                return
            self.step()
        raise AssertionError("scheduler did not drain")

    def steps_until(self, rid: str, first_token: bool) -> int:
        """Steps until `rid` has its first token (or has finished)."""
        for n in range(1, 1000):
            self.step()
            if (self.ids.get(rid) if first_token else self.finished.get(rid)):
                return n
        raise AssertionError(f"{rid} made no progress")


def fill_with_background(rec: Recorder, ps: list[list[int]], max_new: int) -> None:
    for i, p in enumerate(ps):
        submit(rec.s, f"bg{i}", p, max_new, background=True)
    while rec.s.waiting and len(rec.s.running) < rec.s.args.max_running_requests:
        rec.step()
    rec.step()  # every running line decodes together
    assert rec.sizes[-1] == rec.s.args.max_running_requests, "an idle engine runs a full batch"


def check_exact(rec: Recorder, ps: list[list[int]], max_new: int) -> None:
    for i, p in enumerate(ps):
        assert rec.finished[f"bg{i}"] == 1
        assert rec.ids[f"bg{i}"] == expected(p, max_new), i


def test_online_request_goes_ahead_of_a_full_batch() -> None:
    online_prompt = prompts(1, seed=11)[0]
    idle = Recorder(make())
    submit(idle.s, "on", online_prompt, 8, background=False)
    idle_first = idle.steps_until("on", True)
    idle_done = idle_first + idle.steps_until("on", False)

    ps = prompts(24, seed=10)  # 16 request slots: 16 lines run, 8 queue
    rec = Recorder(make(num_slots=2048))
    fill_with_background(rec, ps, 30)
    assert rec.s.waiting, "batch lines are queued behind the full engine"
    submit(rec.s, "on", online_prompt, 8, background=False)
    first = rec.steps_until("on", True)
    assert rec.s.stats["num_preemptions"] == 1  # one line gave up its request slot
    done = first + rec.steps_until("on", False)
    # The online request's first token comes from the very next step, and that step and every
    # later one until it finished ran it alone: the batch lines sat out, none was admitted.
    assert (first, done) == (idle_first, idle_done) == (1, 8)
    assert rec.sizes[-done:] == [1] * done
    assert rec.ids["on"] == expected(online_prompt, 8)
    rec.step()
    assert rec.sizes[-1] > 1, "the batch resumes once the online request is done"
    rec.drain()
    check_exact(rec, ps, 30)
    assert all_free(rec.s)


def test_online_prompt_preempts_batch_kv() -> None:
    ps = prompts(16, seed=12)
    rec = Recorder(make(num_slots=1100))
    fill_with_background(rec, ps, 60)
    for _ in range(25):
        rec.step()
    big = prompts(1, seed=13, shared=180)[0]  # more than the pool has free
    s = rec.s
    held = len(s.running) + sum(headroom(r, s.new_token_ratio) for r in s.running)
    assert held + len(big) > s.kv.available() + s.kv.evictable()
    submit(rec.s, "on", big, 10, background=False)
    assert rec.steps_until("on", True) == 1
    assert rec.s.stats["num_preemptions"] >= 1
    rec.drain()
    assert rec.ids["on"] == expected(big, 10)
    check_exact(rec, ps, 60)
    assert all_free(rec.s)


def test_background_chunk_gives_way() -> None:
    long_prompts = prompts(1, seed=14, shared=60)
    rec = Recorder(make(chunked_prefill_size=8))
    submit(rec.s, "bg0", long_prompts[0], 12, background=True)
    rec.step()
    assert rec.s.chunked is not None and rec.s.chunked.background
    online_prompt = prompts(1, seed=15)[0]
    submit(rec.s, "on", online_prompt, 6, background=False)
    # The chunk is put back (its computed prefix stays cached); the online prompt is next.
    assert rec.steps_until("on", True) <= (len(online_prompt) + 7) // 8
    assert rec.s.stats["num_preemptions"] == 1
    rec.drain()
    assert rec.ids["on"] == expected(online_prompt, 6)
    check_exact(rec, long_prompts, 12)
    assert all_free(rec.s)


def test_queued_batch_lines_wait_for_online_work() -> None:
    s = make()
    rec = Recorder(s)
    online = prompts(3, seed=16)
    for i, p in enumerate(online):
        submit(s, f"on{i}", p, 5, background=False)
    lines = prompts(4, seed=17)
    for i, p in enumerate(lines):
        submit(s, f"bg{i}", p, 5, background=True)
    rec.step()
    assert {r.rid for r in s.running} == {"on0", "on1", "on2"}
    assert all(r.background for r in s.waiting)
    rec.drain()
    for i, p in enumerate(online):
        assert rec.ids[f"on{i}"] == expected(p, 5)
    check_exact(rec, lines, 5)
    assert all_free(s)


def test_batch_only_steps_prefill_at_most_the_background_size() -> None:
    s = make(num_slots=2048, chunked_prefill_size=64, background_prefill_size=8)
    tokens: list[int] = []
    forward = s.runner.forward

    def counting_forward(fb: Any) -> Any:
        tokens.append(int(fb.input_ids.numel()))
        return forward(fb)

    s.runner.forward = counting_forward
    rec = Recorder(s)
    lines = prompts(10, seed=18, shared=20)  # 21-59 tokens each: most are chunked at 8
    for i, p in enumerate(lines):
        submit(s, f"bg{i}", p, 6, background=True)
    prefilled = []
    while not s.is_idle():
        decodes = len(s.running)  # a batch-only step decodes every running line
        rec.step()
        prefilled.append(tokens[-1] - decodes)
    assert max(prefilled) == 8, "batch-only steps prefill up to the background size, no more"
    check_exact(rec, lines, 6)
    # An online prompt still gets the whole chunked-prefill budget next to running lines.
    for i, p in enumerate(lines):
        submit(s, f"bg{i}", p, 30, background=True)
    rec.ids.clear()
    rec.finished.clear()
    for _ in range(12):
        rec.step()
    online_prompt = prompts(1, seed=19, shared=30)[0]  # 31+ tokens: more than 8, within 64
    submit(s, "on", online_prompt, 4, background=False)
    assert rec.steps_until("on", True) == 1
    assert tokens[-1] == len(online_prompt), "the whole online prompt, alone, in one step"
    rec.drain()
    assert rec.ids["on"] == expected(online_prompt, 4)
    check_exact(rec, lines, 30)
    assert all_free(s)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batch_steps_stay_small_right_after_online_work() -> None:
    s = make(num_slots=2048, online_recent_window=1.0, background_tokens_after_online=3)
    clock = FakeClock()
    s.clock = clock
    tokens: list[int] = []
    forward = s.runner.forward

    def counting_forward(fb: Any) -> Any:
        tokens.append(int(fb.input_ids.numel()))
        return forward(fb)

    s.runner.forward = counting_forward
    rec = Recorder(s)
    lines = prompts(16, seed=20)
    fill_with_background(rec, lines, 60)  # no online work yet: full steps
    online_prompt = prompts(1, seed=21)[0]
    submit(s, "on", online_prompt, 3, background=False)
    rec.steps_until("on", False)  # its steps run it alone (one line was preempted)
    assert rec.sizes[-3:] == [1, 1, 1]
    clock.now += 0.5  # within the window: 3 tokens a step, rows taken in turn
    running = list(s.running)  # batch lines stream nothing: count their output ids
    made = [len(r.output_ids) for r in running]
    for _ in range(8):
        rec.step()
        assert tokens[-1] <= 3
    assert all(len(r.output_ids) > n for r, n in zip(running, made, strict=True))
    clock.now += 1.0  # the window has passed: the whole batch again
    rec.step()
    assert rec.sizes[-1] >= 15
    rec.drain()
    assert rec.ids["on"] == expected(online_prompt, 3)
    check_exact(rec, lines, 60)
    assert all_free(s)


def test_no_window_means_full_batch_steps_after_online_work() -> None:
    s = make(num_slots=2048, online_recent_window=0.0)
    s.clock = FakeClock()
    rec = Recorder(s)
    lines = prompts(16, seed=22)
    fill_with_background(rec, lines, 20)
    submit(s, "on", prompts(1, seed=23)[0], 2, background=False)
    rec.steps_until("on", False)
    rec.step()
    assert rec.sizes[-1] >= 15
    rec.drain()
    check_exact(rec, lines, 20)


@pytest.mark.parametrize("kw, flag", [
    ({"background_prefill_size": 0}, "--background-prefill-size"),
    ({"background_tokens_after_online": 0}, "--background-tokens-after-online"),
    ({"online_recent_window": -1.0}, "--online-recent-window"),
])  # fmt: skip
def test_background_flags_refuse_bad_values(kw: dict[str, Any], flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        ServerArgs(**kw)
