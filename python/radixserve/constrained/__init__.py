"""Grammar-constrained decoding: backend interface, xgrammar backend, compiled-grammar cache."""

from radixserve.constrained.base import (
    CONSTRAINT_KINDS,
    GrammarBackend,
    GrammarKey,
    GrammarMatcher,
    InvalidGrammarError,
    constraint_key,
)

__all__ = [
    "CONSTRAINT_KINDS",
    "GrammarBackend",
    "GrammarKey",
    "GrammarMatcher",
    "InvalidGrammarError",
    "constraint_key",
]
