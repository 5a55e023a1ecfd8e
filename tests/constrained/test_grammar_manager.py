"""The scheduler's grammar path without a server: compile off-thread, mask only constrained
rows (free rows untouched), accept, stop only where the grammar ends, reasoning gate, cache."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from radixserve.constrained.base import InvalidGrammarError
from radixserve.constrained.grammar_cache import GrammarCache
from radixserve.constrained.grammar_manager import GrammarManager
from radixserve.constrained.xgrammar_backend import XGrammarBackend, build_grammar
from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.sampling_params import SamplingParams
from radixserve.layers.sampling_info import SamplingBatchInfo

VOCAB = 49152


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from radixserve.models.tokenizer import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="module")
def backend(tokenizer: Any) -> XGrammarBackend:
    return XGrammarBackend(tokenizer, VOCAB, [int(tokenizer.eos_token_id)])


def fake_req(rid: str, grammar_after: str | None = None, **constraint: str) -> Any:
    return SimpleNamespace(rid=rid, params=SamplingParams(**constraint), output_ids=[],
                           grammar=None, grammar_after=grammar_after, finish_reason=None)  # fmt: skip


def info(bs: int) -> SamplingBatchInfo:
    z = torch.zeros(bs)
    return SamplingBatchInfo(temperatures=z, top_ps=z + 1, top_ks=torch.ones(bs, dtype=torch.int32),
                             min_ps=z, seeds=z.long(), steps=z.long(), is_all_greedy=True)  # fmt: skip


def run(mgr: GrammarManager, reqs: list[Any], tokenizer: Any, steps: int, seed: int = 0) -> None:
    """Greedy decoding over random logits: only the masks decide what is legal."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        live = [r for r in reqs if r.finish_reason is None]
        if not live:
            return
        inf = info(len(live))
        mgr.apply(live, inf, VOCAB)
        logits = torch.randn(len(live), VOCAB, generator=gen)
        if inf.logit_bias is not None:
            logits = logits + inf.logit_bias
        for r, tok in zip(live, logits.argmax(-1).tolist(), strict=True):
            r.output_ids.append(tok)
            GrammarManager.accept(r, tok, tokenizer)


def test_regex_and_free_rows(backend: XGrammarBackend, tokenizer: Any) -> None:
    mgr = GrammarManager(backend, cache_size=4)
    con, free = fake_req("a", regex=r"(yes|no) [0-9]{1,3}"), fake_req("b")
    mgr.add(con)
    ready: list[Any] = []
    while not ready:
        ready, failed = mgr.ready(block=True)
        assert not failed
    inf = info(2)
    mgr.apply([con, free], inf, VOCAB)
    assert inf.logit_bias is not None and torch.all(inf.logit_bias[1] == 0)
    assert torch.isinf(inf.logit_bias[0]).sum() > VOCAB - 100
    run(mgr, [con], tokenizer, 20)
    assert con.finish_reason == FinishReason(type="stop", matched=tokenizer.eos_token_id)
    assert re.fullmatch(r"(yes|no) [0-9]{1,3}", tokenizer.decode(con.output_ids[:-1]))


def test_no_mask_for_unconstrained_batches(backend: XGrammarBackend) -> None:
    mgr = GrammarManager(backend, cache_size=4)
    inf = info(3)
    mgr.apply([fake_req("x"), fake_req("y"), fake_req("z")], inf, VOCAB)
    assert inf.logit_bias is None


def test_grammar_waits_for_reasoning_end(backend: XGrammarBackend, tokenizer: Any) -> None:
    mgr = GrammarManager(backend, cache_size=4)
    req = fake_req("r", grammar_after="</think>", regex="[0-9]{3}")
    mgr.add(req)
    while not mgr.ready(block=True)[0]:
        pass
    inf = info(1)
    mgr.apply([req], inf, VOCAB)
    assert inf.logit_bias is None  # reasoning: free
    for tok in tokenizer.encode("hmm</think>", add_special_tokens=False):
        req.output_ids.append(tok)
        GrammarManager.accept(req, tok, tokenizer)
    assert req.grammar_after is None
    n = len(req.output_ids)
    run(mgr, [req], tokenizer, 10)
    assert re.fullmatch("[0-9]{3}", tokenizer.decode(req.output_ids[n:-1]))


def test_cache_shares_compiles_and_is_bounded(backend: XGrammarBackend) -> None:
    cache = GrammarCache(backend, capacity=2)
    a = cache.get(("regex", "a+"))
    assert cache.get(("regex", "a+")) is a and cache.hits == 1
    cache.get(("regex", "b+"))
    cache.get(("regex", "c+"))
    assert len(cache) == 2 and cache.get(("regex", "a+")) is not a
    bad = cache.get(("regex", "a(")).exception()
    assert isinstance(bad, InvalidGrammarError)
    cache.shutdown()


@pytest.mark.parametrize("key", [("json_schema", '{"type": 5}'), ("json_schema", "[1"),
                                 ("regex", "(("), ("ebnf", "root ::= x"),
                                 ("structural_tag", '{"structures": []}')])  # fmt: skip
def test_invalid_constraints_name_their_field(key: tuple[str, str]) -> None:
    with pytest.raises(InvalidGrammarError, match=f"^{key[0]} "):
        build_grammar(key)
