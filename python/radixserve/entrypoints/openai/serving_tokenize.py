"""POST /v1/tokenize and /v1/detokenize (also served at /tokenize and /detokenize)."""

from __future__ import annotations

from typing import Any

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openai.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from radixserve.entrypoints.openai.serving_base import encode


class ServingTokenize:
    def __init__(self, tokenizer: Any, vocab_size: int, max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len

    def tokenize(self, req: TokenizeRequest) -> bytes:
        def one(text: str) -> list[int]:
            return list(self.tokenizer.encode(text, add_special_tokens=req.add_special_tokens))

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
