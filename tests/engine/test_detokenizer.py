"""Incremental detokenization on the default model's tokenizer (byte-level BPE)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from radixserve.engine import ipc
from radixserve.engine.detokenizer import IncrementalDetokenizer, held_back_for_stop
from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.io_struct import GenerateRequest
from radixserve.engine.request_state import ReqState
from radixserve.engine.sampling_params import SamplingParams
from radixserve.models.tokenizer import load_tokenizer

TEXTS = [
    "Hello, world! Grüße aus Köln 🙂🚀 — 東京タワー, naïve café, ok.",
    "emoji only: 🧑‍🚀👩🏽‍🔬🏳️‍🌈 and math ∑∫√∞ ≠ ≤",
    "   leading spaces\n\ttabs and\r\nnewlines  ",
    "한국어 텍스트와 العربية و עברית",
]


@pytest.fixture(scope="module")
def tok() -> Any:
    return load_tokenizer(None)


@pytest.mark.parametrize("text", TEXTS)
def test_token_by_token_matches_full_decode(tok: Any, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False)
    prompt = tok.encode("Say it:", add_special_tokens=False)
    d = IncrementalDetokenizer(tok, prompt)
    deltas = [d.add([t]) for t in ids]
    deltas.append(d.flush())
    assert "".join(deltas) == tok.decode(ids) == d.text
    assert not any("\ufffd" in x for x in deltas), "a split character leaked as U+FFFD"
    assert d.output_ids == ids


def test_split_multibyte_is_held_back(tok: Any) -> None:
    ids = tok.encode("🚀", add_special_tokens=False)
    assert len(ids) > 1, "the emoji should span several byte tokens"
    d = IncrementalDetokenizer(tok, [])
    assert all(d.add([t]) == "" for t in ids[:-1])
    assert d.add([ids[-1]]) == "🚀"


def test_random_chunking(tok: Any) -> None:
    rng = random.Random(0)
    text = " ".join(TEXTS)
    ids = tok.encode(text, add_special_tokens=False)
    for _ in range(5):
        d = IncrementalDetokenizer(tok, [])
        out, i = [], 0
        while i < len(ids):
            k = rng.randint(1, 4)
            out.append(d.add(ids[i : i + k]))
            i += k
        out.append(d.flush())
        assert "".join(out) == tok.decode(ids)


def test_special_tokens(tok: Any) -> None:
    special = tok.convert_tokens_to_ids("<|im_end|>")
    ids = tok.encode("hi there", add_special_tokens=False) + [special]
    keep = IncrementalDetokenizer(tok, [], skip_special_tokens=False)
    skip = IncrementalDetokenizer(tok, [], skip_special_tokens=True)
    assert "".join(keep.add([t]) for t in ids) + keep.flush() == "hi there<|im_end|>"
    assert "".join(skip.add([t]) for t in ids) + skip.flush() == "hi there"


def test_held_back_for_stop() -> None:
    assert held_back_for_stop("abc STO", ["STOP"]) == 3
    assert held_back_for_stop("abc ST", ["STOP", "T!"]) == 2
    assert held_back_for_stop("abc", ["STOP"]) == 0
    assert held_back_for_stop("", ["STOP"]) == 0


def _state(tok: Any, stop: list[str], no_trim: bool = False) -> ReqState:
    params = SamplingParams(stop=stop, no_stop_trim=no_trim)
    msg = ipc.TokenizedGenerateReq(
        rid="r", input_ids=[1, 2], sampling_params=params, max_new_tokens=50, seed=0, stream=True
    )
    req = GenerateRequest(rid="r", input_ids=[1, 2], sampling_params=params, stream=True)
    return ReqState(msg, req, 0, asyncio.Queue(), tok)


@pytest.mark.parametrize("no_trim", [False, True])
def test_stream_holds_back_and_trims_stop(tok: Any, no_trim: bool) -> None:
    ids = tok.encode("The answer is 42. END of story", add_special_tokens=False)
    state = _state(tok, ["END"], no_trim)
    streamed = []
    for i, t in enumerate(ids):
        text = tok.decode(ids[: i + 1])
        done = "END" in text
        reason = FinishReason(type="stop", matched="END") if done else None
        up = ipc.ReqUpdate("r", [t], done, reason, 2, 0)
        out = state.apply(up)
        streamed.append(out.delta_text)
        assert "END"[:1] not in "".join(streamed) or no_trim
        if done:
            break
    full = "".join(streamed)
    assert out.text == full
    assert full == ("The answer is 42. END" if no_trim else "The answer is 42. ")


def test_backend_decode_equals_tokenizer_decode(tok: Any) -> None:
    """The detokenizer calls the Rust decode directly for the default tokenizer; it must give
    tokenizer.decode's text for any ids (special tokens kept or skipped)."""
    d = IncrementalDetokenizer(tok, [])
    assert d.backend_decode is not None
    rng = random.Random(7)
    specials = list(tok.all_special_ids)
    for _ in range(300):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randint(1, 12))]
        ids.insert(rng.randint(0, len(ids)), rng.choice(specials))
        for skip in (True, False):
            assert d.backend_decode(ids, skip) == tok.decode(ids, skip_special_tokens=skip)


def test_tokenizer_with_space_cleanup_keeps_its_decode(tok: Any) -> None:
    class Cleaning:
        clean_up_tokenization_spaces = True
        _tokenizer = tok._tokenizer

    assert IncrementalDetokenizer(Cleaning(), []).backend_decode is None
