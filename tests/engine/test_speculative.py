"""N-gram speculative decoding: proposals, greedy outputs token for token equal to plain
decoding (tiny random Llama and the default model), and sampled outputs with the same
distribution as plain sampling (tiny random Llama; the exact test is test_spec_sampling.py)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from scipy.stats import chi2_contingency

from radixserve.engine.engine import Engine
from radixserve.engine.speculative.ngram import propose_ngram

from .conftest import VOCAB


def test_propose_ngram() -> None:
    # The longest suffix n-gram wins, at its latest earlier occurrence.
    assert propose_ngram([1, 2, 3, 9, 9, 1, 2, 3, 7, 1, 2, 3], 3) == [7, 1, 2]
    assert propose_ngram([5, 6, 7, 5, 6], 4) == [7, 5, 6]
    assert propose_ngram([5, 6, 7, 5, 6], 1) == [7]
    assert propose_ngram([1, 2, 3], 4) == []  # 3 never appeared before
    assert propose_ngram([4, 4], 3) == [4]
    assert propose_ngram([], 3) == [] and propose_ngram([1, 1], 0) == []
    # max_ngram bounds the pattern; min_ngram 2 refuses single-token matches.
    assert propose_ngram([8, 1, 2, 9, 2], 2, min_ngram=2) == []
    assert propose_ngram([8, 1, 2, 9, 2], 2, min_ngram=1) == [9, 2]


rng = random.Random(11)
BASE = [rng.randrange(3, VOCAB) for _ in range(24)]
NEW = 24


def run(path: str | None, spec: bool, prompts: list[list[int]], new: int, **kw: Any) -> Any:
    extra: dict[str, Any] = {"speculative_algorithm": "NGRAM"} if spec else {}
    with Engine(path, dtype="float32", num_threads=1, max_total_tokens=8192, **extra, **kw) as eng:
        params = {"max_new_tokens": new, "temperature": 0.0, "ignore_eos": True}
        first = eng.generate(input_ids=prompts[0], sampling_params=params)["output_ids"]
        # A random model rarely repeats itself: prompts that contain its own continuation
        # (prompt + continuation + prompt) make the n-gram drafts right some of the time.
        prompts = [p + first + p for p in prompts[:1]] + prompts
        outs = eng.generate(input_ids=prompts, sampling_params=params)
        # A sampled request alongside a greedy one: it speculates by rejection sampling (its
        # tokens differ from plain sampling's; the greedy one's must not).
        sampled = eng.generate(
            input_ids=prompts[:2],
            sampling_params=[{**params, "temperature": 0.8, "sampling_seed": 3}, params],
        )
        assert len(sampled[0]["output_ids"]) == new
        greedy = [first] + [o["output_ids"] for o in [*outs, sampled[1]]]
        return greedy, outs, eng.get_load()


def test_ngram_greedy_identical_tiny(tiny_llama_dir: str) -> None:
    prompts = [BASE, BASE[:7] * 4 + [5, 6], [rng.randrange(3, VOCAB) for _ in range(30)]]
    on, outs, load = run(tiny_llama_dir, True, prompts, NEW, speculative_num_draft_tokens=3)
    off, _, load_off = run(tiny_llama_dir, False, prompts, NEW)
    assert on == off
    assert load["num_spec_accepted_tokens"] > 0 and load_off["num_spec_draft_tokens"] == 0
    assert load["num_used_tokens"] == 0  # rejected drafts' KV slots went back to the pool
    meta = outs[0]["meta_info"]
    assert meta["spec_verify_ct"] > 0 and meta["completion_tokens"] == NEW
    assert 0.0 < meta["spec_accept_rate"] <= 1.0
    assert meta["spec_accepted_tokens"] <= meta["spec_draft_tokens"]


def test_ngram_greedy_identical_default_model() -> None:
    from radixserve.models.default_model import default_model_path

    try:
        default_model_path()
    except FileNotFoundError:
        pytest.skip("the default model is not installed")
    from radixserve.models.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    text = (
        "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
        "Rewrite the functions above with type hints.\n"
    )
    prompts = [tok.encode(text), tok.encode("Count: 1, 2, 3, 4, 5, 6, 7, 8,")]
    on, _, load = run(None, True, prompts, 32)
    off, _, _ = run(None, False, prompts, 32)
    assert on == off
    assert load["num_spec_draft_tokens"] > 0
    assert load["num_spec_accepted_tokens"] > 0


def test_ngram_sampling_same_distribution_tiny(tiny_llama_dir: str) -> None:
    """Many seeded sampled requests on a prompt whose drafts are often right: the joint law of
    the tokens after the first (the first comes from the prefill, not a verify step) is the
    same with and without speculation (chi-square test of homogeneity, fixed seeds)."""
    n, new = 400, 4
    counts: list[Counter[tuple[int, ...]]] = []
    for spec in (True, False):
        extra: dict[str, Any] = {"speculative_algorithm": "NGRAM"} if spec else {}
        with Engine(
            tiny_llama_dir, dtype="float32", num_threads=1, max_total_tokens=8192,
            speculative_num_draft_tokens=3, **extra,
        ) as eng:  # fmt: skip
            greedy = {"max_new_tokens": 8, "temperature": 0.0, "ignore_eos": True}
            cont = eng.generate(input_ids=BASE, sampling_params=greedy)["output_ids"]
            prompt = BASE + cont + BASE  # drafts: the greedy continuation
            params = [
                {"max_new_tokens": new, "temperature": 1.0, "top_k": 3, "top_p": 0.95,
                 "ignore_eos": True, "sampling_seed": seed}
                for seed in range(n)
            ]  # fmt: skip
            outs = eng.generate(input_ids=[prompt] * n, sampling_params=params)
            load = eng.get_load()
        assert all(len(o["output_ids"]) == new for o in outs)
        if spec:
            assert 0 < load["num_spec_accepted_tokens"] < load["num_spec_draft_tokens"]
            metas = [o["meta_info"] for o in outs if o["meta_info"].get("spec_verify_ct")]
            assert metas and all(
                m["spec_accept_rate"] == m["spec_accepted_tokens"] / m["spec_draft_tokens"]
                for m in metas
            )
            assert sum(m["spec_accepted_tokens"] for m in metas) == load["num_spec_accepted_tokens"]
        counts.append(Counter(tuple(o["output_ids"][:3]) for o in outs))
    cells = sorted(set(counts[0]) | set(counts[1]))
    big = [c for c in cells if counts[0][c] + counts[1][c] >= 10]
    table = [[cnt[c] for c in big] + [n - sum(cnt[c] for c in big)] for cnt in counts]
    if table[0][-1] + table[1][-1] == 0:
        table = [row[:-1] for row in table]
    assert len(table[0]) >= 3  # a spread of outcomes, not a near point mass
    assert chi2_contingency(table).pvalue > 1e-3, table


def test_ngram_greedy_with_penalties_identical_tiny(tiny_llama_dir: str) -> None:
    """Penalised greedy requests speculate too (the drafts before a position count for its
    penalties) and still produce plain greedy decoding's tokens."""
    params = {
        "max_new_tokens": NEW, "temperature": 0.0, "ignore_eos": True,
        "repetition_penalty": 1.3, "frequency_penalty": 0.4, "presence_penalty": 0.2,
    }  # fmt: skip
    outs, loads = [], []
    for spec in (True, False):
        extra: dict[str, Any] = {"speculative_algorithm": "NGRAM"} if spec else {}
        with Engine(
            tiny_llama_dir, dtype="float32", num_threads=1, max_total_tokens=8192,
            speculative_num_draft_tokens=3, **extra,
        ) as eng:  # fmt: skip
            # The penalised continuation of BASE, then BASE again: drafts copy that continuation.
            first = eng.generate(input_ids=BASE, sampling_params=params)["output_ids"]
            prompt = BASE + first + BASE
            outs.append(eng.generate(input_ids=prompt, sampling_params=params)["output_ids"])
            loads.append(eng.get_load())
    assert outs[0] == outs[1]
    assert loads[0]["num_spec_accepted_tokens"] > 0 and loads[1]["num_spec_draft_tokens"] == 0
