"""A scripted stand-in for TokenizerManager, for app-level tests that need no model.

It speaks the TokenizerManager interface (generate/abort/get_load/...) with a character
tokenizer and a fixed output alphabet, so the HTTP layer's conversion, streaming, errors and
abort handling can be checked exactly. Requests go through the engine's own input path
(`prepare_request`: the checks and the fan-out into n samples), only the model is scripted.
The real engine is tested through tests with a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from radixserve.args import ServerArgs
from radixserve.engine.io_struct import (
    FinishReason,
    GenerateOutput,
    GenerateRequest,
    TokenLogprob,
)
from radixserve.engine.request_state import ModelConfigView, prepare_request

ALPHABET = "abcdefghij"
BOS = 1


class CharTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([BOS] if add_special_tokens else []) + [ord(c) % 256 for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == BOS))


class FakeConfig:
    vocab_size = 256
    context_len = 64
    generation_config = {"temperature": 0.7}


class FakeTokenizerManager:
    def __init__(self, delay: float = 0.0) -> None:
        self.tokenizer = CharTokenizer()
        self.model_config = FakeConfig()
        self.delay = delay
        self.requests: list[GenerateRequest] = []
        self.running: set[str] = set()
        self.aborted: list[str] = []
        self.started = False
        self.stopped = False
        cfg = self.model_config
        self.engine_view = ModelConfigView({"vocab_size": cfg.vocab_size, "max_total_tokens": 1000,
                                            "context_len": cfg.context_len})  # fmt: skip
        self.server_args = ServerArgs()

    def is_alive(self) -> bool:
        return self.started and not self.stopped

    async def start(self) -> None:
        self.started = True

    def shutdown(self) -> None:
        self.stopped = True

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                            continue_final_message: bool = False, **kwargs: Any) -> list[int]:  # fmt: skip
        text = "".join(f"{m['role']}:{m['content']}\n" for m in messages)
        if add_generation_prompt:
            text += "assistant:"
        return self.tokenizer.encode(text)

    def abort(self, rid: str) -> None:
        """As the engine: a request's id aborts all its n samples ("<rid>-<i>") too."""
        self.aborted.append(rid)
        self.running -= {r for r in self.running if r == rid or r.startswith(rid + "-")}

    async def flush_cache(self) -> bool:
        return not self.running

    async def get_load(self) -> dict[str, Any]:
        return {"num_running_reqs": len(self.running), "num_waiting_reqs": 0,
                "num_used_tokens": 0, "token_usage": 0.0, "cache_hit_rate": 0.25,
                "num_aborted": len(self.aborted), "num_spec_draft_tokens": 8,
                "num_spec_accepted_tokens": 2}  # fmt: skip

    def model_info(self) -> dict[str, Any]:
        return {"model_path": "fake/model", "is_generation": True, "tokenizer_path": "fake/model",
                "preferred_sampling_params": None, "weight_version": "default",
                "has_image_understanding": False, "has_audio_understanding": False,
                "model_type": "llama", "architectures": ["LlamaForCausalLM"], "extra": 1}  # fmt: skip

    def server_info(self) -> dict[str, Any]:
        return {"max_total_num_tokens": 1000}

    async def generate(self, req: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.requests.append(req)
        msgs = prepare_request(req, self.tokenizer, self.engine_view, self.server_args)
        for index, msg in enumerate(msgs):  # the n samples, one after another
            async for out in self._sample(req, msg.rid, index, msg.input_ids):
                yield out

    async def _sample(self, req: GenerateRequest, rid: str, index: int, ids: list[int]
                      ) -> AsyncIterator[GenerateOutput]:  # fmt: skip
        sp = req.sampling_params
        limit = sp.max_new_tokens if sp.max_new_tokens is not None else 20
        self.running.add(rid)
        out_ids: list[int] = []
        lps: list[TokenLogprob] = []
        tops: list[list[TokenLogprob]] = []
        text = ""
        start = req.logprob_start_len
        try:
            for k in range(limit):
                await asyncio.sleep(self.delay)
                if rid not in self.running:
                    return
                tok = ord(ALPHABET[k % len(ALPHABET)])
                out_ids.append(tok)
                lps.append(TokenLogprob(-0.5, tok, chr(tok)))
                tops.append([TokenLogprob(-0.5, tok, chr(tok)), TokenLogprob(-1.5, tok + 1, chr(tok + 1))][: req.top_logprobs_num])  # fmt: skip
                new_text = text + chr(tok)
                reason = None
                for s in sp.stop_strings():
                    if s in new_text:
                        new_text = new_text[: new_text.index(s)]
                        reason = FinishReason(type="stop", matched=s)
                if reason is None and k + 1 == limit:
                    reason = FinishReason(type="length", length=limit)
                delta, text = new_text[len(text) :], new_text
                yield GenerateOutput(
                    rid=rid, index=index, text=text, output_ids=list(out_ids),
                    delta_text=delta,
                    delta_ids=[tok], finished=reason is not None, finish_reason=reason,
                    prompt_tokens=len(ids), completion_tokens=len(out_ids), cached_tokens=2,
                    e2e_latency=0.01,
                    output_token_logprobs=list(lps) if req.return_logprob else None,
                    output_top_logprobs=[list(t) for t in tops] if req.return_logprob else None,
                    input_token_logprobs=(
                        # The engine's convention: positions max(logprob_start_len, 1) on.
                        [TokenLogprob(-1.0, t, chr(t)) for t in ids[max(start, 1) :]]
                        if req.return_logprob and start >= 0 else None
                    ),
                )  # fmt: skip
                if reason is not None:
                    return
        finally:
            self.running.discard(rid)
