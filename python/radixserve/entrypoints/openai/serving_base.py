"""What chat and completions share: OpenAI request fields -> SamplingParams, usage, logprobs.

The one place where OpenAI fields become SGLang SamplingParams: the request's value, else the
model's generation_config default, else the OpenAI default. Running the requests (fan-out,
merged updates, abort when the consumer leaves) is entrypoints/serving_common.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import msgspec

from radixserve.constrained.base import InvalidGrammarError
from radixserve.constrained.xgrammar_backend import JSON_OBJECT_SCHEMA, build_grammar, load_off_loop
from radixserve.engine.io_struct import EngineError, GenerateOutput, TokenLogprob
from radixserve.engine.sampling_params import SamplingParams
from radixserve.entrypoints.openai.protocol import PromptTokensDetails, SamplingFields, UsageInfo
from radixserve.entrypoints.serving_common import ServingEngine
from radixserve.metrics import ServerMetrics

if TYPE_CHECKING:
    from radixserve.engine.tokenizer_manager import TokenizerManager

MAX_TOP_LOGPROBS = 20
# Sampling values a model's generation_config may set, and OpenAI's defaults for them.
_DEFAULTS: dict[str, float] = {
    "temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
}  # fmt: skip


class ServingBase(ServingEngine):
    def __init__(
        self, tm: TokenizerManager, model_name: str, metrics: Optional[ServerMetrics]
    ) -> None:
        super().__init__(tm, model_name, metrics)
        gen = getattr(tm.model_config, "generation_config", None) or {}
        if not isinstance(gen, dict):
            gen = {k: getattr(gen, k) for k in _DEFAULTS if getattr(gen, k, None) is not None}
        self.defaults = {k: gen.get(k, v) for k, v in _DEFAULTS.items()}

    # -- request -> internal ------------------------------------------------------------------

    @staticmethod
    async def grammar_ready(req: SamplingFields) -> None:
        """Before building a request that parses a grammar (a constraint, a response_format,
        tools), load the grammar library off the event loop."""
        fmt = req.response_format
        if (req.json_schema or req.regex or req.ebnf or getattr(req, "tools", None)
                or (fmt is not None and fmt.type != "text")):  # fmt: skip
            await load_off_loop()

    def sampling_params(self, req: SamplingFields, max_tokens: Optional[int]) -> SamplingParams:
        def pick(name: str) -> Any:
            value = getattr(req, name)
            return self.defaults[name] if value is None else value

        constraint = req.json_schema
        fmt = req.response_format
        if fmt is not None and fmt.type != "text":
            if fmt.type == "json_object":
                constraint = JSON_OBJECT_SCHEMA
            elif fmt.type == "json_schema":
                if not fmt.json_schema or not isinstance(fmt.json_schema.get("schema"), dict):
                    raise EngineError("response_format.json_schema.schema must be a JSON "
                                      "schema object.", 400, "response_format")  # fmt: skip
                constraint = msgspec.json.encode(fmt.json_schema["schema"]).decode()
                try:
                    build_grammar(("json_schema", constraint))
                except InvalidGrammarError as e:
                    raise EngineError(f"response_format: {e}", 400, "response_format") from None
            else:
                raise EngineError(f"response_format.type {fmt.type!r} is not supported.", 400,
                                  "response_format")  # fmt: skip
        if max_tokens is not None and max_tokens < 1:
            raise EngineError(
                f"max_tokens must be at least 1, got {max_tokens}.", 400, "max_tokens"
            )
        params = SamplingParams(
            max_new_tokens=max_tokens,
            min_new_tokens=req.min_tokens,
            stop=req.stop or None,
            stop_token_ids=req.stop_token_ids,
            temperature=pick("temperature"),
            top_p=pick("top_p"),
            top_k=pick("top_k"),
            min_p=pick("min_p"),
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            repetition_penalty=pick("repetition_penalty"),
            ignore_eos=req.ignore_eos,
            skip_special_tokens=req.skip_special_tokens,
            spaces_between_special_tokens=req.spaces_between_special_tokens,
            no_stop_trim=req.no_stop_trim,
            json_schema=constraint,
            regex=req.regex,
            ebnf=req.ebnf,
            logit_bias=req.logit_bias,
            sampling_seed=req.seed,
        )
        return params  # checked by the engine (request_state.prepare_request)

    # -- response pieces ------------------------------------------------------------------------

    @staticmethod
    def usage(finals: Sequence[GenerateOutput], n: int) -> UsageInfo:
        """The prompt counts once per prompt (not per choice), as OpenAI does."""
        prompt = sum(o.prompt_tokens for o in finals[::n])
        cached = sum(o.cached_tokens for o in finals[::n])
        completion = sum(o.completion_tokens for o in finals)
        return UsageInfo(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        )  # fmt: skip

    @staticmethod
    def chunk_usage(req: SamplingFields, out: GenerateOutput) -> Optional[UsageInfo]:
        """stream_options.continuous_usage_stats: every content chunk carries its choice's
        running usage (SGLang's behaviour); None leaves the chunk's usage null."""
        if req.stream_options is None or not req.stream_options.continuous_usage_stats:
            return None
        return ServingBase.usage([out], 1)

    def token_text(self, lp: TokenLogprob) -> str:
        if lp.text is not None:
            return lp.text
        return str(self.tm.tokenizer.decode([lp.token_id]))
