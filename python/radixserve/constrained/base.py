"""The grammar backend interface the scheduler is written against.

A request constrained by json_schema, regex, ebnf or structural_tag gets one GrammarMatcher,
built from a compiled grammar that the backend produces from a GrammarKey (kind, text). The
scheduler only calls the methods below, so xgrammar and other engines are interchangeable.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # the HTTP process checks constraints without loading torch
    import torch

# The SamplingParams fields that carry a constraint, in the order they are looked up.
CONSTRAINT_KINDS = ("json_schema", "regex", "ebnf", "structural_tag")

GrammarKey = tuple[str, str]  # (kind, text): also the key of the compiled-grammar cache


class InvalidGrammarError(ValueError):
    """The constraint text is not a valid schema / regex / grammar; the message names the field."""


def constraint_key(params: Any) -> Optional[GrammarKey]:
    """The (kind, text) constraint of a SamplingParams, or None for a free request."""
    for kind in CONSTRAINT_KINDS:
        text = getattr(params, kind, None)
        if text:
            return kind, text
    return None


class GrammarMatcher(ABC):
    """The per-request state of a grammar: which tokens may come next."""

    @abstractmethod
    def accept_token(self, token: int) -> bool:
        """Advance by one sampled token; False if the grammar rejects it."""

    @abstractmethod
    def is_terminated(self) -> bool:
        """True once the grammar accepted a stop token (nothing more may follow)."""

    @abstractmethod
    def rollback(self, num_tokens: int) -> None:
        """Undo the last num_tokens accepted tokens."""

    def jump_forward_string(self) -> str:
        """The text every continuation must start with ('' when there is a choice)."""
        return ""


class GrammarBackend(ABC):
    """Compiles GrammarKeys for one tokenizer and fills packed token bitmasks (int32
    [rows, ceil(vocab / 32)], bit t % 32 of word t // 32 set where token t is allowed), which
    the sampler applies (layers/sampler.py)."""

    name: str = "base"

    @abstractmethod
    def compile(self, key: GrammarKey) -> Any:
        """A compiled grammar (opaque); raise InvalidGrammarError for bad input."""

    @abstractmethod
    def matcher(self, compiled: Any) -> GrammarMatcher:
        """A fresh matcher at the start of the compiled grammar."""

    @abstractmethod
    def fill_bitmasks(self, matchers: list[GrammarMatcher], bitmask: torch.Tensor,
                      rows: list[int]) -> None:
        """Write the next-token bitmask of matchers[i] into bitmask[rows[i]], all in one call
        (other rows are left as they are)."""


class LazyGrammarBackend(GrammarBackend):
    """A backend built on first use, by whichever thread first needs it: that is the grammar
    cache's compile thread (matchers and bitmasks only follow a finished compile), so the
    scheduler neither starts slower nor stalls. The xgrammar backend costs ~1.5 s of CPU
    (its import, the tokenizer's vocabulary) and ~40 MB a server without constrained
    requests never needs."""

    def __init__(self, name: str, build: Callable[[], GrammarBackend]) -> None:
        self.name = name
        self._build: Optional[Callable[[], GrammarBackend]] = build
        self._backend: Optional[GrammarBackend] = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._backend is not None

    def get(self) -> GrammarBackend:
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    assert self._build is not None
                    self._backend, self._build = self._build(), None
        return self._backend

    def compile(self, key: GrammarKey) -> Any:
        return self.get().compile(key)

    def matcher(self, compiled: Any) -> GrammarMatcher:
        return self.get().matcher(compiled)

    def fill_bitmasks(self, matchers: list[GrammarMatcher], bitmask: torch.Tensor,
                      rows: list[int]) -> None:
        self.get().fill_bitmasks(matchers, bitmask, rows)
