"""LazyGrammarBackend: the real backend is built by the first compile, on the cache's thread,
once; a failed build fails that compile (the request gets the error) and is tried again."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from radixserve.constrained.base import (
    GrammarBackend,
    GrammarKey,
    GrammarMatcher,
    InvalidGrammarError,
    LazyGrammarBackend,
)
from radixserve.constrained.grammar_cache import GrammarCache
from radixserve.constrained.grammar_manager import make_backend


class CountingMatcher(GrammarMatcher):
    def accept_token(self, token: int) -> bool:
        return True

    def is_terminated(self) -> bool:
        return False

    def rollback(self, num_tokens: int) -> None:
        pass


class RecordingBackend(GrammarBackend):
    name = "recording"

    def __init__(self) -> None:
        self.compiled: list[GrammarKey] = []

    def compile(self, key: GrammarKey) -> Any:
        self.compiled.append(key)
        return key

    def matcher(self, compiled: Any) -> GrammarMatcher:
        return CountingMatcher()

    def fill_bitmasks(self, matchers: list[GrammarMatcher], bitmask: torch.Tensor,
                      rows: list[int]) -> None:  # fmt: skip
        bitmask[rows] = 7


def test_built_once_by_the_compile_thread() -> None:
    builds: list[str] = []
    inner = RecordingBackend()

    def build() -> GrammarBackend:
        builds.append(threading.current_thread().name)
        return inner

    lazy = LazyGrammarBackend("recording", build)
    cache = GrammarCache(lazy)
    assert not lazy.built and builds == []
    for text in ("a", "b", "a"):
        assert cache.get(("regex", text)).result(timeout=30) == ("regex", text)
    assert lazy.built and len(builds) == 1 and builds[0].startswith("grammar")
    assert inner.compiled == [("regex", "a"), ("regex", "b")]  # the cache kept "a"
    bitmask = torch.zeros(3, 2, dtype=torch.int32)
    lazy.fill_bitmasks([lazy.matcher("x")], bitmask, [1])
    assert bitmask[:, 0].tolist() == [0, 7, 0]
    cache.shutdown()


def test_failed_build_fails_the_compile_and_is_retried() -> None:
    attempts = []

    def build() -> GrammarBackend:
        attempts.append(1)
        if len(attempts) == 1:
            raise InvalidGrammarError("constrained decoding needs the xgrammar package")
        return RecordingBackend()

    lazy = LazyGrammarBackend("recording", build)
    cache = GrammarCache(lazy)
    with pytest.raises(InvalidGrammarError, match="needs the xgrammar"):
        cache.get(("regex", "a")).result(timeout=30)
    assert not lazy.built
    assert cache.get(("regex", "a")).result(timeout=30) == ("regex", "a")
    assert lazy.built and len(attempts) == 2
    cache.shutdown()


def test_xgrammar_backend_is_lazy_and_works() -> None:
    from radixserve.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(None)
    backend = make_backend("xgrammar", tokenizer, 49152, [int(tokenizer.eos_token_id)])
    assert isinstance(backend, LazyGrammarBackend) and not backend.built
    matcher = backend.matcher(backend.compile(("regex", "ab")))
    assert backend.built
    for token in tokenizer.encode("ab", add_special_tokens=False):
        assert matcher.accept_token(token)
    assert make_backend("none", tokenizer, 49152, []) is None
