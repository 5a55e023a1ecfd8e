"""The grammar backend interface the scheduler is written against.

A request constrained by json_schema, regex, ebnf or structural_tag gets one GrammarMatcher,
built from a compiled grammar that the backend produces from a GrammarKey (kind, text). The
scheduler only calls the methods below, so xgrammar and other engines are interchangeable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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
