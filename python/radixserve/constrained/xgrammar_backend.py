"""The xgrammar backend: GrammarKey -> xgrammar Grammar -> CompiledGrammar -> GrammarMatcher.

JSON is compiled without free whitespace (compact `{"a":1}` style): a model may otherwise emit
whitespace forever, since a grammar can always continue with more of it; small models do.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from radixserve.constrained.base import (
    GrammarBackend,
    GrammarKey,
    GrammarMatcher,
    InvalidGrammarError,
)
from radixserve.engine.offload import offload

# The bare SGLang json_object constraint (response_format json_object).
JSON_OBJECT_SCHEMA = '{"type": "object"}'


def _xgr() -> Any:
    try:
        import xgrammar
    except ImportError as e:  # an install without the dependency
        raise InvalidGrammarError(
            "constrained decoding needs the xgrammar package (pip install xgrammar)"
        ) from e
    return xgrammar


async def load_off_loop() -> None:
    """Import xgrammar on the worker thread before a request first parses a grammar: its first
    import (torch under it) takes 2-3 s, which on the HTTP event loop would stall every stream.
    A missing package is left for build_grammar to report."""
    if "xgrammar" not in sys.modules:
        with contextlib.suppress(InvalidGrammarError):
            await offload(_xgr)


def _structural_tag(xgr: Any, text: str) -> Any:
    """SGLang's structural_tag: {"structures": [{"begin", "schema", "end"}], "triggers": [...]}
    (xgrammar's legacy form), or xgrammar's own {"type": "structural_tag", "format": ...}."""
    spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError("a structural_tag must be a JSON object")
    if "format" in spec:
        return xgr.Grammar.from_structural_tag(text)
    items = [
        xgr.StructuralTagItem(
            begin=s["begin"],
            schema=json.dumps(s.get("schema", s.get("parameters", {}))),
            end=s["end"],
        )
        for s in spec.get("structures", [])
    ]
    triggers = list(spec.get("triggers", []))
    if not items or not triggers:
        raise ValueError("a structural_tag needs non-empty structures and triggers")
    return xgr.Grammar.from_structural_tag(items, triggers)


def build_grammar(key: GrammarKey) -> Any:
    """Parse the constraint into an xgrammar Grammar (no tokenizer needed: used for validation
    in the HTTP process, too). Raises InvalidGrammarError naming the field."""
    xgr = _xgr()
    kind, text = key
    try:
        if kind == "json_schema":
            schema = json.loads(text)
            if not isinstance(schema, (dict, bool)):
                raise ValueError("a JSON schema must be an object or a boolean")
            return xgr.Grammar.from_json_schema(text, any_whitespace=False, strict_mode=True)
        if kind == "regex":
            return xgr.Grammar.from_regex(text)
        if kind == "ebnf":
            return xgr.Grammar.from_ebnf(text)
        if kind == "structural_tag":
            return _structural_tag(xgr, text)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        # xgrammar prefixes "[time] /path/file.cc:line: "; keep the human part.
        detail = detail.split(": ", 1)[1] if detail.startswith("[") and ": " in detail else detail
        raise InvalidGrammarError(f"{kind} is not a valid {_WHAT[kind]}: {detail}") from None
    raise InvalidGrammarError(f"unknown constraint kind {kind!r}")


_WHAT = {
    "json_schema": "JSON schema",
    "regex": "regular expression",
    "ebnf": "EBNF grammar",
    "structural_tag": "structural tag",
}


class XGrammarMatcher(GrammarMatcher):
    def __init__(self, matcher: Any) -> None:
        self._m = matcher

    def accept_token(self, token: int) -> bool:
        return bool(self._m.accept_token(token))

    def is_terminated(self) -> bool:
        return bool(self._m.is_terminated())

    def rollback(self, num_tokens: int) -> None:
        self._m.rollback(num_tokens)

    def jump_forward_string(self) -> str:
        return str(self._m.find_jump_forward_string())


class XGrammarBackend(GrammarBackend):
    name = "xgrammar"

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> None:
        xgr = _xgr()
        self._xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids or None
        )
        # Our own LRU (grammar_cache.py) holds compiled grammars; xgrammar's cache would be a
        # second, unbounded copy.
        self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        # Fills the masks of all constrained rows of a step in one call (its own threads).
        self._batch = xgr.BatchGrammarMatcher(max_threads="auto")

    def compile(self, key: GrammarKey) -> Any:
        grammar = build_grammar(key)
        try:
            return self._compiler.compile_grammar(grammar)
        except RuntimeError as e:
            raise InvalidGrammarError(f"{key[0]} could not be compiled: {e}") from None

    def matcher(self, compiled: Any) -> GrammarMatcher:
        return XGrammarMatcher(self._xgr.GrammarMatcher(compiled))

    def fill_bitmasks(self, matchers: list[GrammarMatcher], bitmask: torch.Tensor,
                      rows: list[int]) -> None:
        inner = [m._m for m in matchers if isinstance(m, XGrammarMatcher)]
        assert len(inner) == len(matchers), "matchers of another backend"
        self._batch.batch_fill_next_token_bitmask(inner, bitmask, indices=rows)
