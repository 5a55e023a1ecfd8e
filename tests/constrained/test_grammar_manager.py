"""The scheduler's grammar path without a server: compile off-thread, mask only constrained
rows (free rows untouched), accept, stop only where the grammar ends, reasoning gate, cache,
jump-forward."""

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
from radixserve.layers.sampler import unpack_bitmask
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
        if inf.token_bitmask is not None:
            logits[~unpack_bitmask(inf.token_bitmask, VOCAB)] = float("-inf")
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
    assert inf.logit_bias is None and inf.token_bitmask is not None
    allowed = unpack_bitmask(inf.token_bitmask, VOCAB)
    assert bool(allowed[1].all()) and int(allowed[0].sum()) < 100
    run(mgr, [con], tokenizer, 20)
    assert con.finish_reason == FinishReason(type="stop", matched=tokenizer.eos_token_id)
    assert re.fullmatch(r"(yes|no) [0-9]{1,3}", tokenizer.decode(con.output_ids[:-1]))


def test_no_mask_for_unconstrained_batches(backend: XGrammarBackend) -> None:
    mgr = GrammarManager(backend, cache_size=4)
    inf = info(3)
    mgr.apply([fake_req("x"), fake_req("y"), fake_req("z")], inf, VOCAB)
    assert inf.logit_bias is None and inf.token_bitmask is None


def test_grammar_waits_for_reasoning_end(backend: XGrammarBackend, tokenizer: Any) -> None:
    mgr = GrammarManager(backend, cache_size=4)
    req = fake_req("r", grammar_after="</think>", regex="[0-9]{3}")
    mgr.add(req)
    while not mgr.ready(block=True)[0]:
        pass
    inf = info(1)
    mgr.apply([req], inf, VOCAB)
    assert inf.token_bitmask is None  # reasoning: free
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


# -- jump-forward ---------------------------------------------------------------------------
RECORD = {
    "type": "object",
    "properties": {
        "customer_full_name": {"type": "string", "maxLength": 10},
        "customer_priority_level": {"enum": ["standard", "premium"]},
        "number_of_open_tickets": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["customer_full_name", "customer_priority_level", "number_of_open_tickets"],
    "additionalProperties": False,
}


def real_req(tokenizer: Any, rid: str, max_new: int = 200, **params: Any) -> Any:
    from radixserve.engine import ipc
    from radixserve.engine.request import Req

    msg = ipc.TokenizedGenerateReq(rid=rid, input_ids=[1], max_new_tokens=max_new, seed=0,
                                   sampling_params=SamplingParams(temperature=0, **params))  # fmt: skip
    return Req(msg, [int(tokenizer.eos_token_id)], 4096)


def ready_req(mgr: GrammarManager, req: Any) -> Any:
    mgr.add(req)
    while not mgr.ready(block=True)[0]:
        pass
    return req


def decode_steps(mgr: GrammarManager, req: Any, tokenizer: Any, seed: int = 0) -> int:
    """Greedy decoding over random logits as the scheduler runs it (sample, accept, finish
    check, jump-forward); returns the number of sampling steps."""
    gen = torch.Generator().manual_seed(seed)
    steps = 0
    while not req.finished:
        inf = info(1)
        mgr.apply([req], inf, VOCAB)
        logits = torch.randn(1, VOCAB, generator=gen)
        if inf.token_bitmask is not None:
            logits[~unpack_bitmask(inf.token_bitmask, VOCAB)] = float("-inf")
        tok = int(logits.argmax())
        req.output_ids.append(tok)
        GrammarManager.accept(req, tok, tokenizer)
        req.check_finished(tokenizer)
        mgr.after_sample(req, tokenizer)
        steps += 1
    return steps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jump_forward_output_validates_in_fewer_steps(backend: XGrammarBackend, tokenizer: Any,
                                                      seed: int) -> None:  # fmt: skip
    import json

    import jsonschema

    outs, steps = {}, {}
    for jump in (False, True):
        mgr = GrammarManager(backend, cache_size=4, jump_forward=jump)
        req = ready_req(mgr, real_req(tokenizer, f"j{jump}", json_schema=json.dumps(RECORD)))
        steps[jump] = decode_steps(mgr, req, tokenizer, seed)
        assert req.finish_reason == FinishReason(type="stop", matched=tokenizer.eos_token_id)
        text = tokenizer.decode(req.output_ids[:-1])
        jsonschema.validate(json.loads(text), RECORD)
        outs[jump] = (text, len(req.output_ids))
    # The key names are forced: jump-forward skips most of their decode steps.
    assert steps[True] < steps[False] - 10, (steps, outs)


def test_plan_jump_joins_the_last_token_with_the_forced_text(backend: XGrammarBackend,
                                                             tokenizer: Any) -> None:  # fmt: skip
    import json

    from radixserve.constrained.jump_forward import plan_jump

    mgr = GrammarManager(backend, cache_size=4)
    req = ready_req(mgr, real_req(tokenizer, "p", json_schema=json.dumps(RECORD)))
    brace = tokenizer.encode("{", add_special_tokens=False)
    assert len(brace) == 1 and req.grammar.accept_token(brace[0])
    forced = req.grammar.jump_forward_string()
    assert forced.startswith('"customer_full_name":')
    tokens = plan_jump(req.grammar, brace[0], tokenizer)
    text = tokenizer.decode(tokens)
    assert len(tokens) >= 2 and text.startswith("{") and ("{" + forced).startswith(text)
    # The last token of the joined text is left to the model; the rest is the canonical split.
    whole = tokenizer.encode("{" + forced, add_special_tokens=False)
    assert tokens == whole[:-1]
    assert plan_jump(req.grammar, brace[0], tokenizer) == tokens  # planning changes nothing


def test_jump_forward_stops_inside_forced_text(backend: XGrammarBackend, tokenizer: Any) -> None:
    import json

    schema = json.dumps(RECORD)
    mgr = GrammarManager(backend, cache_size=4, jump_forward=True)
    req = ready_req(mgr, real_req(tokenizer, "s", json_schema=schema, stop="priority"))
    decode_steps(mgr, req, tokenizer)
    assert req.finish_reason == FinishReason(type="stop", matched="priority")
    assert tokenizer.decode(req.output_ids).count("priority") == 1
    req = ready_req(mgr, real_req(tokenizer, "l", max_new=4, json_schema=schema))
    decode_steps(mgr, req, tokenizer)
    assert req.finish_reason == FinishReason(type="length", length=4) and len(req.output_ids) == 4


def test_jump_forward_skips_logprob_requests(backend: XGrammarBackend, tokenizer: Any) -> None:
    import json

    mgr = GrammarManager(backend, cache_size=4, jump_forward=True)
    req = ready_req(mgr, real_req(tokenizer, "lp", json_schema=json.dumps(RECORD)))
    req.return_logprob = True
    steps = decode_steps(mgr, req, tokenizer)
    assert steps == len(req.output_ids)  # one sampled token per step, nothing jumped
