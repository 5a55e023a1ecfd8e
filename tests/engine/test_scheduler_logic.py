"""Scheduler bookkeeping against a model whose next token is a function of the KV it reads.

The test model stores each fed token id in its "KV pool" and predicts the next token from the
whole sequence read back through req_to_token, so any wrong slot (prefix cache, chunking,
retraction, eviction) changes the output. Expected outputs come from the same function on the
plain token list.
"""

from __future__ import annotations

import random
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from radixserve.args import ServerArgs
from radixserve.cache.memory_pool import ReqToTokenPool
from radixserve.cache.radix_cache import RadixCache
from radixserve.engine import ipc
from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.kv_manager import KVManager, make_allocator
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.scheduler import Scheduler
from radixserve.layers.sampling_info import SampleOutput, SamplingBatchInfo

V = 53
EOS = 52


def next_token(seq: list[int]) -> int:
    h = 0
    for i, t in enumerate(seq):
        h = (h * 31 + (i + 1) * (t + 7)) % 1_000_003
    return h % (V - 1)  # never EOS by itself


class LetterTokenizer:
    def decode(self, ids: list[int], skip_special_tokens: bool = True, **_: Any) -> str:
        return "".join(chr(ord("a") + t % 26) for t in ids)


class KVReadingRunner:
    def __init__(self, num_slots: int, rows: int, context_len: int) -> None:
        self.model_config = SimpleNamespace(
            vocab_size=V, context_len=context_len, eos_token_ids=[EOS]
        )
        self.tokenizer = LetterTokenizer()
        self.req_to_token_pool = ReqToTokenPool(rows, context_len)
        self.max_total_tokens = num_slots
        self.kv = torch.full((num_slots + 1,), -1, dtype=torch.int64)
        self.force_eos_at: dict[int, int] = {}  # sequence length -> emit EOS there

    def forward(self, fb: Any) -> torch.Tensor:
        assert fb.out_cache_loc.min() >= 1, "slot 0 is the padding sink"
        self.kv[fb.out_cache_loc] = fb.input_ids
        table = self.req_to_token_pool.req_to_token
        logits = torch.zeros(fb.batch_size, V)
        for i in range(fb.batch_size):
            row, n = int(fb.req_pool_indices[i]), int(fb.seq_lens[i])
            seq = self.kv[table[row, :n].long()].tolist()
            tok = EOS if n in self.force_eos_at else next_token(seq)
            logits[i, tok] = 10.0
            logits[i, (tok + 1) % V] = 9.0  # runner-up, chosen while tok is masked
        return logits

    def sample(self, logits: torch.Tensor, info: SamplingBatchInfo) -> SampleOutput:
        if info.logit_bias is not None:
            logits = logits + info.logit_bias
        return SampleOutput(next_token_ids=logits.argmax(-1))


def make(num_slots: int = 512, rows: int = 16, context: int = 256, radix: bool = True,
         **kw: Any) -> Scheduler:  # fmt: skip
    kw.setdefault("grammar_backend", "none")  # the letter tokenizer has no vocabulary for xgrammar
    args = ServerArgs(max_running_requests=rows, disable_radix_cache=not radix, **kw)
    runner = KVReadingRunner(num_slots, rows, context)
    alloc = make_allocator(num_slots)
    tree = RadixCache(alloc) if radix else None
    return Scheduler(args, runner, KVManager(alloc, tree, runner.req_to_token_pool))


def submit(s: Scheduler, rid: str, ids: list[int], max_new: int = 8, **params: Any) -> None:
    p = SamplingParams(max_new_tokens=max_new, **params)
    s.add_request(ipc.TokenizedGenerateReq(rid=rid, input_ids=ids, sampling_params=p,
                                           max_new_tokens=max_new, seed=1))  # fmt: skip


def run(s: Scheduler, max_steps: int = 10_000) -> dict[str, ipc.ReqUpdate]:
    done: dict[str, ipc.ReqUpdate] = {}
    ids: dict[str, list[int]] = {}
    for _ in range(max_steps):
        if s.is_idle():
            break
        for up in s.step():
            ids.setdefault(up.rid, []).extend(up.new_ids)
            if up.finished:
                up.new_ids = ids[up.rid]
                done[up.rid] = up
    assert s.is_idle(), "scheduler did not drain"
    return done


def expected(prompt: list[int], n: int) -> list[int]:
    seq, out = list(prompt), []
    for _ in range(n):
        t = next_token(seq)
        out.append(t)
        seq.append(t)
    return out


def all_free(s: Scheduler) -> bool:
    assert s.flush_cache()
    return s.kv.available() == s.runner.max_total_tokens and s.kv.free_rows() == 16


def prompts(k: int, seed: int = 0, shared: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    head = [rng.randrange(V - 1) for _ in range(shared)]
    return [head + [rng.randrange(V - 1) for _ in range(rng.randrange(1, 40))] for _ in range(k)]


@pytest.mark.parametrize("radix", [True, False])
def test_one_by_one_and_batched(radix: bool) -> None:
    ps = prompts(8)
    s = make(radix=radix)
    for i, p in enumerate(ps):
        submit(s, f"r{i}", p)
        assert run(s)[f"r{i}"].new_ids == expected(p, 8)
    for i, p in enumerate(ps):
        submit(s, f"b{i}", p)
    out = run(s)
    for i, p in enumerate(ps):
        assert out[f"b{i}"].new_ids == expected(p, 8)
        assert out[f"b{i}"].finish_reason == FinishReason(type="length", length=8)
    assert all_free(s)


def test_prefix_cache_hits_and_chunked_prefill() -> None:
    ps = prompts(8, seed=1, shared=50)
    s = make(chunked_prefill_size=16)
    submit(s, "first", ps[0])
    run(s)
    for i, p in enumerate(ps[1:]):
        submit(s, f"r{i}", p, max_new=12)
    out = run(s)
    for i, p in enumerate(ps[1:]):
        assert out[f"r{i}"].new_ids == expected(p, 12)
        assert out[f"r{i}"].cached_tokens >= 50
    assert s.load()["cache_hit_rate"] > 0.5
    assert all_free(s)


def test_retraction_when_kv_runs_out() -> None:
    ps = prompts(12, seed=2)
    s = make(num_slots=160, chunked_prefill_size=32)
    for i, p in enumerate(ps):
        submit(s, f"r{i}", p, max_new=40)
    out = run(s)
    assert s.stats["num_retractions"] > 0
    for i, p in enumerate(ps):
        assert out[f"r{i}"].new_ids == expected(p, 40), i
    assert all_free(s)


def test_abort_frees_everything() -> None:
    s = make(chunked_prefill_size=8)
    for i, p in enumerate(prompts(6, seed=3)):
        submit(s, f"r{i}", p, max_new=50)
    s.step()
    s.step()
    ups = [u for i in range(6) for u in s.abort(f"r{i}")]
    assert {u.rid for u in ups} == {f"r{i}" for i in range(6)}
    assert all(u.finish_reason and u.finish_reason.type == "abort" for u in ups)
    assert s.is_idle() and all_free(s)


def test_stop_conditions() -> None:
    p = prompts(1, seed=4)[0]
    ref = expected(p, 20)
    text = LetterTokenizer().decode(ref)
    s = make()
    # A stop string spanning tokens 5..7 of the output.
    submit(s, "str", p, max_new=20, stop=[text[5:8]])
    submit(s, "ids", p, max_new=20, stop_token_ids=[ref[3]])
    out = run(s)
    assert out["str"].new_ids == ref[:8]
    assert out["str"].finish_reason == FinishReason(type="stop", matched=text[5:8])
    assert out["ids"].new_ids == ref[:4]
    assert out["ids"].finish_reason == FinishReason(type="stop", matched=ref[3])
    # EOS at output length 3: stops, unless ignore_eos or min_new_tokens masks it.
    s.runner.force_eos_at = {len(p) + 2}
    submit(s, "eos", p, max_new=6)
    submit(s, "ign", p, max_new=6, ignore_eos=True)
    submit(s, "min", p, max_new=6, min_new_tokens=5)
    out = run(s)
    assert out["eos"].new_ids[-1] == EOS and len(out["eos"].new_ids) == 3
    assert len(out["ign"].new_ids) == 6 and out["ign"].new_ids[2] == EOS
    assert len(out["min"].new_ids) == 6 and EOS not in out["min"].new_ids
    assert all_free(s)


def test_context_limit_and_unfittable_prompt() -> None:
    s = make(num_slots=64, context=32)
    submit(s, "ctx", [1] * 30, max_new=10)
    out = run(s)
    assert len(out["ctx"].new_ids) == 2 and out["ctx"].finish_reason.type == "length"
    s2 = make(num_slots=20, context=256, chunked_prefill_size=8)
    submit(s2, "big", list(range(30)), max_new=4)
    out = run(s2)
    assert out["big"].finish_reason.type == "abort"
    assert all_free(s) and all_free(s2)


def test_waiting_queue_is_a_fifo_deque() -> None:
    """One running row at a time: requests leave the waiting deque from the front, in order."""
    s = make(rows=1, schedule_policy="fcfs")
    for i in range(4):
        submit(s, f"q{i}", [3 + i, 4, 5], max_new=2)
    assert isinstance(s.waiting, deque) and [r.rid for r in s.waiting] == ["q0", "q1", "q2", "q3"]
    order: list[str] = []
    for _ in range(1000):
        if s.is_idle():
            break
        order += [up.rid for up in s.step() if up.finished]
    assert order == ["q0", "q1", "q2", "q3"] and not s.waiting
