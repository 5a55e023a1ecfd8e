"""Turn the loose input fields of the pooling routes into token id lists, or a 400 naming the
field: empty lists and strings, wrong types, ids outside the vocabulary and over-long inputs
(unless `truncate_prompt_tokens`) are all caught here, before anything reaches the engine."""

from __future__ import annotations

from typing import Any, Optional

from radixserve.engine.io_struct import EngineError
from radixserve.models.tokenizer import encode_text


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def as_prompt_list(value: Any, param: str) -> tuple[list[str | list[int]], bool]:
    """(prompts, batched): a string, a list of strings, a list of ids or a list of id lists."""
    if isinstance(value, str):
        return [value], False
    if not isinstance(value, list):
        raise EngineError(
            f"'{param}' must be a string, a list of strings, a list of token ids or a list of "
            "token-id lists.",
            400,
            param,
        )
    if not value:
        raise EngineError(f"'{param}' must not be empty.", 400, param)
    if all(_is_int(x) for x in value):
        return [list(value)], False
    if all(isinstance(x, str) for x in value):
        return list(value), True
    if all(isinstance(x, list) and all(_is_int(t) for t in x) for x in value):
        return [list(x) for x in value], True
    raise EngineError(
        f"'{param}' mixes types: give strings, token ids or lists of token ids.", 400, param
    )


def check_truncate(n: Optional[int]) -> None:
    if n is not None and n < 1:
        raise EngineError("truncate_prompt_tokens must be >= 1.", 400, "truncate_prompt_tokens")


def check_ids(ids: list[int], vocab_size: int, context_len: int, param: str,
              truncate: Optional[int] = None) -> list[int]:  # fmt: skip
    """Validated (and, with `truncate`, right-truncated) token ids."""
    if not ids:
        raise EngineError(f"'{param}' contains an empty input.", 400, param)
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise EngineError(
            f"'{param}': {bad} is not a token id (vocabulary size {vocab_size}).", 400, param
        )
    if truncate is not None:
        ids = ids[:truncate]
    if len(ids) > context_len:
        raise EngineError(
            f"'{param}': the input has {len(ids)} tokens, more than the model's context length "
            f"({context_len}); set truncate_prompt_tokens to truncate it.",
            400,
            param,
        )
    return ids


def tokenize(tokenizer: Any, text: str, param: str, truncate: Optional[int] = None,
             add_special_tokens: bool = True) -> list[int]:  # fmt: skip
    """Token ids of a non-empty text; truncation keeps the start (and the special tokens)."""
    if not text:
        raise EngineError(f"'{param}' contains an empty string.", 400, param)
    if truncate is not None:
        enc = tokenizer(text, add_special_tokens=add_special_tokens, truncation=True,
                        max_length=truncate)  # fmt: skip
        return list(enc["input_ids"])
    return encode_text(tokenizer, text, add_special_tokens=add_special_tokens)


def prompt_ids(tokenizer: Any, cfg: Any, prompt: str | list[int], param: str,
               truncate: Optional[int] = None) -> list[int]:  # fmt: skip
    vocab, ctx = int(cfg.vocab_size), int(cfg.context_len)
    if isinstance(prompt, str):
        return check_ids(tokenize(tokenizer, prompt, param, truncate), vocab, ctx, param)
    return check_ids(prompt, vocab, ctx, param, truncate)
