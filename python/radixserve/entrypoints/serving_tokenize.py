"""POST /v1/tokenize and /v1/detokenize, also served at SGLang's /tokenize and /detokenize:
one implementation and one request format for the OpenAI-style and the native routes."""

from __future__ import annotations

from typing import Any, Optional, Union

import msgspec

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.serving_common import encode
from radixserve.models.tokenizer import encode_text


class TokenizeRequest(msgspec.Struct, kw_only=True):
    prompt: Union[str, list[str]]
    model: Optional[str] = None
    add_special_tokens: bool = True


class TokenizeResponse(msgspec.Struct, kw_only=True):
    tokens: Any  # list[int], or list[list[int]] for a list of prompts
    count: Any  # int, or list[int]
    max_model_len: int


class DetokenizeRequest(msgspec.Struct, kw_only=True):
    tokens: list[Any]  # list[int] or list[list[int]]: checked by ServingTokenize.detokenize
    model: Optional[str] = None
    skip_special_tokens: bool = True


class DetokenizeResponse(msgspec.Struct, kw_only=True):
    text: Any  # str, or list[str] for a list of token lists


class ServingTokenize:
    def __init__(self, tokenizer: Any, vocab_size: int, max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len

    def tokenize(self, req: TokenizeRequest) -> bytes:
        def one(text: str) -> list[int]:
            return encode_text(self.tokenizer, text, add_special_tokens=req.add_special_tokens)

        if isinstance(req.prompt, str):
            tokens: Any = one(req.prompt)
            count: Any = len(tokens)
        else:
            tokens = [one(p) for p in req.prompt]
            count = [len(t) for t in tokens]
        return encode(TokenizeResponse(tokens=tokens, count=count,
                                       max_model_len=self.max_model_len))  # fmt: skip

    def detokenize(self, req: DetokenizeRequest) -> bytes:
        batch = bool(req.tokens) and all(isinstance(t, list) for t in req.tokens)
        lists = req.tokens if batch else [req.tokens]
        for ids in lists:
            for t in ids:
                if type(t) is not int or not 0 <= t < self.vocab_size:
                    raise EngineError(f"tokens: {t!r} is not a token id (vocabulary size "
                                      f"{self.vocab_size}).", 400, "tokens")  # fmt: skip
        texts = [self.tokenizer.decode(ids, skip_special_tokens=req.skip_special_tokens)
                 for ids in lists]  # fmt: skip
        return encode(DetokenizeResponse(text=texts if batch else texts[0]))
