"""The whole engine (Engine -> TokenizerManager -> scheduler process -> ModelRunner) on a tiny
random Llama, against transformers' greedy generate in float32."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import pytest
import torch

from radixserve.engine.engine import Engine
from radixserve.engine.io_struct import EngineError

from .conftest import VOCAB, hf_greedy

NEW = 24
rng = random.Random(0)
PROMPTS = [[rng.randrange(3, VOCAB) for _ in range(n)] for n in (3, 9, 17, 33, 50, 70, 90, 130)]
SHARED = [rng.randrange(3, VOCAB) for _ in range(100)]


def greedy(max_new: int = NEW, **kw: Any) -> dict[str, Any]:
    return {"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True, **kw}


@pytest.fixture(scope="module")
def reference(hf_tiny: Any) -> list[list[int]]:
    return [hf_greedy(hf_tiny, p, NEW) for p in PROMPTS]


def make_engine(path: str, backend: str) -> Engine:
    # A KV pool too small for all prompts at once (retraction) and 64-token prefill chunks.
    return Engine(
        path,
        dtype="float32",
        kernel_backend=backend,
        attention_backend=backend,
        max_total_tokens=360,
        chunked_prefill_size=64,
        max_running_requests=8,
        num_threads=1,
    )


@pytest.fixture(scope="module")
def engine(tiny_llama_dir: str) -> Any:
    eng = make_engine(tiny_llama_dir, "native")
    yield eng
    eng.shutdown()


def test_torch_backend_batched(tiny_llama_dir: str, reference: list[list[int]]) -> None:
    with make_engine(tiny_llama_dir, "torch") as eng:
        outs = eng.generate(input_ids=PROMPTS, sampling_params=greedy())
        assert [o["output_ids"] for o in outs] == reference
        assert eng.flush_cache()
        load = eng.get_load()
        assert load["kv_available"] == load["kv_size"]


def test_greedy_one_by_one_and_batched(engine: Engine, reference: list[list[int]]) -> None:
    for p, ref in zip(PROMPTS, reference, strict=True):
        out = engine.generate(input_ids=p, sampling_params=greedy())
        assert out["output_ids"] == ref
        assert out["meta_info"]["finish_reason"] == {"type": "length", "length": NEW}
    outs = engine.generate(input_ids=PROMPTS, sampling_params=greedy())
    assert [o["output_ids"] for o in outs] == reference
    load = engine.get_load()
    assert load["num_retractions"] > 0, "the small KV pool should have forced a retraction"
    assert engine.flush_cache()
    load = engine.get_load()
    assert load["kv_available"] == load["kv_size"] == 360


def test_prefix_cache_reports_cached_tokens(engine: Engine, hf_tiny: Any) -> None:
    prompts = [SHARED + p[:10] for p in PROMPTS[:4]]
    first = engine.generate(input_ids=prompts[0], sampling_params=greedy(8))
    assert first["meta_info"]["cached_tokens"] == 0 or engine.flush_cache() is False
    outs = engine.generate(input_ids=prompts[1:], sampling_params=greedy(8))
    for p, o in zip(prompts[1:], outs, strict=True):
        assert o["meta_info"]["cached_tokens"] >= len(SHARED)
        assert o["output_ids"] == hf_greedy(hf_tiny, p, 8)
    assert engine.get_load()["cache_hit_rate"] > 0


def test_seeded_sampling_reproducible_and_batch_independent(engine: Engine) -> None:
    params = {"max_new_tokens": 12, "temperature": 1.0, "sampling_seed": 1234, "ignore_eos": True}
    alone = engine.generate(input_ids=PROMPTS[2], sampling_params=params)
    again = engine.generate(input_ids=PROMPTS[2], sampling_params=params)
    mixed = engine.generate(
        input_ids=[PROMPTS[5], PROMPTS[2], PROMPTS[1]],
        sampling_params=[{**params, "sampling_seed": 7}, params, {"temperature": 0.7}],
    )
    assert alone["output_ids"] == again["output_ids"] == mixed[1]["output_ids"]


def test_stop_strings_ids_and_lengths(engine: Engine) -> None:
    prompt = "Once upon a time"
    base = engine.generate(prompt, greedy(20))
    ids = base["output_ids"]
    tok = engine.tokenizer
    # A stop string that spans the boundary of output tokens 3 and 4.
    t3, t4 = tok.decode(ids[:4]), tok.decode(ids[:5])
    stop = t3[-2:] + t4[len(t3) : len(t3) + 2]
    if not stop.strip():
        pytest.skip("degenerate decode")
    out = engine.generate(prompt, greedy(20, stop=[stop]))
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert out["text"] == base["text"][: base["text"].find(stop)]
    kept = engine.generate(prompt, greedy(20, stop=[stop], no_stop_trim=True))
    # Untrimmed: up to the end of the token that completed the stop string.
    assert stop in kept["text"] and base["text"].startswith(kept["text"])
    out = engine.generate(prompt, greedy(20, stop_token_ids=[ids[5]]))
    assert out["output_ids"] == ids[: ids.index(ids[5]) + 1]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": ids[5]}
    # The tiny model's "EOS" (id 2): forced through logit_bias, masked by min_new_tokens.
    eos = {"2": 100.0}
    out = engine.generate(prompt, {"max_new_tokens": 10, "temperature": 0, "logit_bias": eos})
    assert out["output_ids"] == [2] and out["meta_info"]["finish_reason"]["matched"] == 2
    out = engine.generate(prompt, {"max_new_tokens": 10, "min_new_tokens": 4, "logit_bias": eos})
    assert len(out["output_ids"]) == 5 and 2 not in out["output_ids"][:4]
    out = engine.generate(prompt, greedy(10, logit_bias=eos))
    assert out["output_ids"] == [2] * 10


def test_n_samples_and_streaming(engine: Engine) -> None:
    outs = engine.generate("Hello", {"max_new_tokens": 6, "n": 3, "sampling_seed": 5})
    assert len(outs) == 3 and all(len(o["output_ids"]) <= 6 for o in outs)
    full = engine.generate("Hello", greedy(10))
    chunks = list(engine.generate("Hello", greedy(10), stream=True))
    assert "".join(c["text"] for c in chunks) == full["text"]
    assert [t for c in chunks for t in c["output_ids"]] == full["output_ids"]
    assert chunks[-1]["meta_info"]["finish_reason"]["type"] == "length"


def test_abort_and_bad_requests(engine: Engine) -> None:
    stream = engine.generate(input_ids=PROMPTS[3], sampling_params=greedy(200), stream=True)
    first = next(stream)
    assert first["output_ids"]
    stream.close()  # the consumer leaves: the request is aborted
    deadline = time.time() + 10
    while engine.get_load()["num_running_reqs"] and time.time() < deadline:
        time.sleep(0.05)
    assert engine.get_load()["num_running_reqs"] == 0
    assert engine.flush_cache()
    load = engine.get_load()
    assert load["kv_available"] == load["kv_size"]
    with pytest.raises(EngineError, match="context length"):
        engine.generate(input_ids=[5] * 500, sampling_params={"max_new_tokens": 100})
    with pytest.raises(EngineError, match="top_p"):
        engine.generate("hi", {"top_p": 0.0})
    with pytest.raises(EngineError, match="not a token id"):
        engine.generate(input_ids=[VOCAB + 5])


def test_scheduler_death_fails_callers_promptly(tiny_llama_dir: str) -> None:
    eng = Engine(tiny_llama_dir, dtype="float32", max_total_tokens=256, num_threads=1)
    try:
        pid = eng.get_server_info()["scheduler_pid"]
        errors: list[BaseException] = []

        def call() -> None:
            try:
                for _ in range(20):
                    eng.generate(input_ids=PROMPTS[0], sampling_params=greedy(300))
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        t.join(5)
        assert not t.is_alive(), "the caller was not released"
        assert errors and isinstance(errors[0], EngineError) and errors[0].status == 503
        with pytest.raises(EngineError):
            eng.generate("hi")
        assert not eng.tokenizer_manager.is_alive()
    finally:
        eng.shutdown()


def test_manager_api_and_logprobs(engine: Engine) -> None:
    tm = engine.tokenizer_manager
    info = tm.model_info()
    assert info["is_generation"] is True and "model_path" in info and "architectures" in info
    server = engine.get_server_info()
    assert server["max_total_tokens"] == 360 and server["context_len"] == 512
    assert engine._run(tm.health())
    load = engine.get_load()
    for key in ("num_running_reqs", "num_waiting_reqs", "num_used_tokens", "token_usage",
                "cache_hit_rate"):  # fmt: skip
        assert key in load
    ids = tm.apply_chat_template([{"role": "user", "content": "hi there"}])
    assert "hi there" in engine.tokenizer.decode(ids)
    out = engine.generate(
        input_ids=PROMPTS[1], sampling_params=greedy(5), return_logprob=True, top_logprobs_num=3
    )
    lps = out["meta_info"]["output_token_logprobs"]
    tops = out["meta_info"]["output_top_logprobs"]
    assert [t[1] for t in lps] == out["output_ids"]
    assert all(lp[0] <= 0.0 for lp in lps)
    # Greedy: the chosen token is the most likely one.
    assert [top[0][1] for top in tops] == out["output_ids"] and all(len(t) == 3 for t in tops)


def hf_input_logprobs(model: Any, ids: list[int]) -> torch.Tensor:
    """log_softmax of transformers' logits: row p scores token p + 1."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def check_input_logprobs(out: dict[str, Any], ref: torch.Tensor, ids: list[int], start: int,
                         k: int) -> None:  # fmt: skip
    first = max(start, 1)
    lps = out["meta_info"]["input_token_logprobs"]
    assert [t[1] for t in lps] == ids[first:]
    want = ref[torch.arange(first - 1, len(ids) - 1), torch.tensor(ids[first:])]
    torch.testing.assert_close(torch.tensor([t[0] for t in lps]), want, atol=2e-4, rtol=1e-4)
    tops = out["meta_info"]["input_top_logprobs"]
    assert len(tops) == len(ids) - first and all(len(t) == k for t in tops)
    for p, top in zip(range(first - 1, len(ids) - 1), tops, strict=True):
        vals = torch.tensor([t[0] for t in top])
        torch.testing.assert_close(vals, ref[p, [t[1] for t in top]], atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(vals, ref[p].topk(k).values, atol=2e-4, rtol=1e-4)


def test_input_logprobs_match_transformers(engine: Engine, hf_tiny: Any) -> None:
    ids = PROMPTS[6]  # 90 tokens: two 64-token prefill chunks
    ref = hf_input_logprobs(hf_tiny, ids)
    kw: dict[str, Any] = {"return_logprob": True, "top_logprobs_num": 3}
    assert engine.flush_cache()
    cold = engine.generate(input_ids=ids, sampling_params=greedy(2), logprob_start_len=0, **kw)
    assert cold["meta_info"]["cached_tokens"] == 0
    check_input_logprobs(cold, ref, ids, 0, 3)
    assert len(cold["meta_info"]["output_token_logprobs"]) == 2
    # The same prompt again: the radix cache holds it, but cached KV gives no logits.
    warm = engine.generate(input_ids=ids, sampling_params=greedy(2), logprob_start_len=0, **kw)
    assert warm["meta_info"]["cached_tokens"] == 0
    check_input_logprobs(warm, ref, ids, 0, 3)
    assert warm["output_ids"] == cold["output_ids"]
    # From position 70 on: the prefix before position 69 is reused (one chunk computes the rest).
    mid = engine.generate(input_ids=ids, sampling_params=greedy(2), logprob_start_len=70, **kw)
    assert mid["meta_info"]["cached_tokens"] == 69
    check_input_logprobs(mid, ref, ids, 70, 3)
    # From position 10 on, batched with other requests and streamed.
    outs = engine.generate(input_ids=[ids, PROMPTS[2]], sampling_params=greedy(2),
                           logprob_start_len=10, **kw)  # fmt: skip
    check_input_logprobs(outs[0], ref, ids, 10, 3)
    check_input_logprobs(outs[1], hf_input_logprobs(hf_tiny, PROMPTS[2]), PROMPTS[2], 10, 3)
    chunks = list(engine.generate(input_ids=ids, sampling_params=greedy(3), stream=True,
                                  logprob_start_len=5, return_logprob=True))  # fmt: skip
    assert "input_top_logprobs" not in chunks[-1]["meta_info"]  # top_logprobs_num is 0
    lps = chunks[-1]["meta_info"]["input_token_logprobs"]
    assert [t[1] for t in lps] == ids[5:]
    # Past the prompt: nothing to report; without return_logprob: no input logprobs at all.
    past = engine.generate(input_ids=PROMPTS[0], sampling_params=greedy(1), logprob_start_len=9,
                           return_logprob=True)  # fmt: skip
    assert past["meta_info"]["input_token_logprobs"] == []
    plain = engine.generate(input_ids=ids, sampling_params=greedy(1), logprob_start_len=0)
    assert "input_token_logprobs" not in plain["meta_info"]
    with pytest.raises(EngineError, match="logprob_start_len"):
        engine.generate(input_ids=ids, logprob_start_len=-2, return_logprob=True)
