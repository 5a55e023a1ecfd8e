"""The external API contract: msgspec Structs for every OpenAI request and response.

Requests ignore unknown fields (clients send vendor extras); types are checked by msgspec at
decode time, so a wrong type becomes a 400 naming the field. SGLang extensions (top_k, min_p,
repetition_penalty, ...) sit beside the OpenAI fields, as in SGLang's protocol.py.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Optional, Union

import msgspec

from radixserve.engine.session_protocol import SessionParams
from radixserve.entrypoints.serving_common import UnservedFields

# ---------------------------------------------------------------------------------------------
# Shared pieces


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class ResponseFormat(msgspec.Struct, kw_only=True):
    type: str = "text"
    json_schema: Optional[dict[str, Any]] = None


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0


class UsageInfo(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: Optional[PromptTokensDetails] = None


class SamplingFields(UnservedFields, kw_only=True):
    """Sampling fields shared by chat and completions (OpenAI + SGLang extensions).

    None means "not given": serving_base resolves it from the model's generation_config, then
    from the OpenAI default.
    """

    model: Optional[str] = None
    n: int = 1
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[dict[str, float]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    # SGLang extensions
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: Optional[list[int]] = None
    no_stop_trim: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    regex: Optional[str] = None
    ebnf: Optional[str] = None
    json_schema: Optional[str] = None
    response_format: Optional[ResponseFormat] = None
    rid: Optional[Union[str, list[str]]] = None


# ---------------------------------------------------------------------------------------------
# Chat completions


class ContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: Optional[str] = None
    image_url: Optional[Any] = None


class ChatMessage(msgspec.Struct, kw_only=True):
    role: str
    content: Optional[Union[str, list[ContentPart]]] = None
    name: Optional[str] = None
    tool_calls: Optional[list[Any]] = None
    tool_call_id: Optional[str] = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: list[ChatMessage]
    max_completion_tokens: Optional[int] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = None
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Union[str, dict[str, Any]]] = None
    parallel_tool_calls: Optional[bool] = None
    reasoning_effort: Optional[str] = None
    # SGLang extensions
    chat_template_kwargs: Optional[dict[str, Any]] = None
    continue_final_message: bool = False
    separate_reasoning: bool = True
    stream_reasoning: bool = True
    session_params: Optional[SessionParams] = None  # continue an open session (/open_session)


class TopLogprob(msgspec.Struct, kw_only=True):
    token: str
    logprob: float
    bytes: Optional[list[int]] = None


class TokenLogprobInfo(msgspec.Struct, kw_only=True):
    token: str
    logprob: float
    bytes: Optional[list[int]] = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(msgspec.Struct, kw_only=True):
    content: Optional[list[TokenLogprobInfo]] = None


class ChatResponseMessage(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[Any]] = None


class ChatCompletionChoice(msgspec.Struct, kw_only=True):
    index: int
    message: ChatResponseMessage
    logprobs: Optional[ChoiceLogprobs] = None
    finish_reason: Optional[str] = None
    matched_stop: Optional[Union[int, str]] = None


class ChatCompletionResponse(msgspec.Struct, kw_only=True):
    id: str
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageInfo
    object: str = "chat.completion"
    created: int = msgspec.field(default_factory=lambda: int(time.time()))


class DeltaMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Optional[str] = None
    content: Optional[str] = None
    reasoning_content: Optional[str] = None  # issue #10: --reasoning-parser
    tool_calls: Optional[list[Any]] = None  # issue #10: streamed tool-call deltas


class ChatStreamChoice(msgspec.Struct, kw_only=True):
    index: int
    delta: DeltaMessage
    logprobs: Optional[ChoiceLogprobs] = None
    finish_reason: Optional[str] = None
    matched_stop: Optional[Union[int, str]] = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[ChatStreamChoice]
    usage: Optional[UsageInfo] = None
    object: str = "chat.completion.chunk"


# ---------------------------------------------------------------------------------------------
# Text completions


class CompletionRequest(SamplingFields, kw_only=True):
    # str, list[str], list[int] or list[list[int]]: checked by serving_completions.
    prompt: Union[str, list[Any]]
    max_tokens: Optional[int] = 16
    echo: bool = False
    logprobs: Optional[int] = None
    suffix: Optional[str] = None
    best_of: Optional[int] = None


class CompletionLogprobs(msgspec.Struct, kw_only=True):
    tokens: list[str] = []
    token_logprobs: list[Optional[float]] = []
    top_logprobs: list[Optional[dict[str, float]]] = []
    text_offset: list[int] = []


class CompletionChoice(msgspec.Struct, kw_only=True):
    index: int
    text: str
    logprobs: Optional[CompletionLogprobs] = None
    finish_reason: Optional[str] = None
    matched_stop: Optional[Union[int, str]] = None


class CompletionResponse(msgspec.Struct, kw_only=True):
    id: str
    model: str
    choices: list[CompletionChoice]
    usage: Optional[UsageInfo] = None
    object: str = "text_completion"
    created: int = msgspec.field(default_factory=lambda: int(time.time()))


# ---------------------------------------------------------------------------------------------
# Models, tokenize


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    root: str
    max_model_len: int
    object: str = "model"
    created: int = msgspec.field(default_factory=lambda: int(time.time()))
    owned_by: str = "radixserve"
    parent: Optional[str] = None


class ModelList(msgspec.Struct, kw_only=True):
    data: list[ModelCard]
    object: Literal["list"] = "list"
