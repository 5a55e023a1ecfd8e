"""SamplingParams: SGLang's sampling fields, defaults and checks (one place for /generate and /v1)."""

from __future__ import annotations

from typing import Any, Optional, Union

import msgspec

TOP_K_ALL = 1 << 30
MAX_N = 128  # samples per request
_GREEDY_EPS = 1e-6


class SamplingParams(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    max_new_tokens: Optional[int] = 128
    min_new_tokens: int = 0
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    stop_regex: Optional[Union[str, list[str]]] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    n: int = 1
    json_schema: Optional[str] = None
    regex: Optional[str] = None
    ebnf: Optional[str] = None
    structural_tag: Optional[str] = None
    logit_bias: Optional[dict[str, float]] = None
    sampling_seed: Optional[int] = None
    custom_params: Optional[dict[str, Any]] = None
    stream_interval: Optional[int] = None

    @property
    def is_greedy(self) -> bool:
        return self.temperature < _GREEDY_EPS or self.top_k == 1

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def normalized_top_k(self, vocab_size: int) -> int:
        """top_k as a count in [1, vocab_size] (-1 and 1<<30 mean the whole vocabulary)."""
        if self.top_k == -1 or self.top_k >= vocab_size:
            return vocab_size
        return self.top_k

    def verify(self, vocab_size: Optional[int] = None) -> None:
        """Raise ValueError naming the field and its allowed range."""
        if self.max_new_tokens is not None and self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be at least 0, got {self.max_new_tokens}.")
        if self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be at least 0, got {self.min_new_tokens}.")
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be at most max_new_tokens ({self.max_new_tokens}), "
                f"got {self.min_new_tokens}."
            )
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.top_k < 1 and self.top_k != -1:
            raise ValueError(f"top_k must be -1 (disable) or at least 1, got {self.top_k}.")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {value}.")
        if not 0.0 < self.repetition_penalty <= 2.0:
            raise ValueError(f"repetition_penalty must be in (0, 2], got {self.repetition_penalty}.")
        if not 1 <= self.n <= MAX_N:
            raise ValueError(f"n must be in [1, {MAX_N}], got {self.n}.")
        if self.stream_interval is not None and self.stream_interval < 1:
            raise ValueError(f"stream_interval must be at least 1, got {self.stream_interval}.")
        constraints = [x for x in (self.json_schema, self.regex, self.ebnf, self.structural_tag) if x]
        if len(constraints) > 1:
            raise ValueError("Only one of json_schema, regex, ebnf and structural_tag may be set.")
        if constraints:
            # Parse now (no tokenizer needed) so bad input is a 400, never a scheduler error.
            from radixserve.constrained.base import constraint_key
            from radixserve.constrained.xgrammar_backend import build_grammar

            grammar_key = constraint_key(self)
            assert grammar_key is not None
            build_grammar(grammar_key)
        if self.stop_regex:
            raise ValueError("stop_regex is not supported yet.")
        for s in self.stop_strings():
            if not isinstance(s, str) or s == "":
                raise ValueError("stop strings must be non-empty strings.")
        if vocab_size is not None:
            for t in self.stop_token_ids or []:
                if not 0 <= t < vocab_size:
                    raise ValueError(f"stop_token_ids: {t} is not a token id (vocabulary size {vocab_size}).")
            for key, bias in (self.logit_bias or {}).items():
                try:
                    token = int(key)
                except ValueError:
                    raise ValueError(f"logit_bias keys must be token ids, got {key!r}.") from None
                if not 0 <= token < vocab_size:
                    raise ValueError(f"logit_bias: {token} is not a token id (vocabulary size {vocab_size}).")
                if not -100.0 <= bias <= 100.0:
                    raise ValueError(f"logit_bias values must be in [-100, 100], got {bias}.")


def parse_sampling_params(raw: Optional[dict[str, Any]]) -> SamplingParams:
    """Build SamplingParams from a JSON dict; unknown keys or wrong types raise ValueError."""
    try:
        return msgspec.convert(raw or {}, SamplingParams, strict=False)
    except (msgspec.ValidationError, TypeError) as e:
        raise ValueError(f"Invalid sampling_params: {e}") from None
