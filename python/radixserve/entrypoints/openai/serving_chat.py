"""POST /v1/chat/completions: messages -> chat template -> token ids -> choices (JSON or SSE)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Optional

import msgspec

from radixserve.constrained.base import constraint_key
from radixserve.engine.io_struct import EngineError, GenerateOutput
from radixserve.engine.offload import INLINE_CHARS, offload, text_size
from radixserve.engine.pooling_request import EMBEDDING_SERVER
from radixserve.entrypoints.openai.chat_output import (
    ChoiceStream,
    build_message,
    reasoning_parser_for,
)
from radixserve.entrypoints.openai.protocol import (
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatStreamChoice,
    ChoiceLogprobs,
    DeltaMessage,
    TokenLogprobInfo,
    TopLogprob,
)
from radixserve.entrypoints.openai.serving_base import MAX_TOP_LOGPROBS, ServingBase
from radixserve.entrypoints.openai.tool_support import (
    ToolPlan,
    plan_tools,
    render_history,
    template_reads_tools,
)
from radixserve.entrypoints.serving_common import (
    checked_session,
    encode,
    error_body,
    finish_reason,
    new_id,
    sse,
    sse_done,
)
from radixserve.parsers.reasoning import THINK_END


class ServingChat(ServingBase):
    prompt_param = "messages"  # the engine's prompt errors name the messages

    def messages(self, req: ChatCompletionRequest) -> list[dict[str, Any]]:
        """Plain {"role", "content"} dicts for the chat template (text parts joined)."""
        if not req.messages:
            raise EngineError("messages must not be empty.", 400, "messages")
        out: list[dict[str, Any]] = []
        for k, m in enumerate(req.messages):
            if m.role not in ("system", "user", "assistant", "developer", "tool"):
                raise EngineError(f"messages[{k}].role {m.role!r} is not one of system, user, "
                                  "assistant, developer, tool.", 400, "messages")  # fmt: skip
            content = m.content
            if isinstance(content, list):
                texts = []
                for part in content:
                    if part.type != "text" or part.text is None:
                        raise EngineError(f"messages[{k}]: content parts of type {part.type!r} "
                                          "are not supported by this text-only model.", 400,
                                          "messages")  # fmt: skip
                    texts.append(part.text)
                content = "\n".join(texts)
            role = "system" if m.role == "developer" else m.role
            msg: dict[str, Any] = {"role": role, "content": content or ""}
            if m.name is not None:
                msg["name"] = m.name
            out.append(msg)
        return out

    def _server_arg(self, name: str) -> Any:
        return getattr(getattr(self.tm, "server_args", None), name, None)

    def tool_plan(self, req: ChatCompletionRequest) -> ToolPlan:
        return plan_tools(req.tools, req.tool_choice, req.parallel_tool_calls,
                          self._server_arg("tool_call_parser"))  # fmt: skip

    def _reasoning(self, req: ChatCompletionRequest) -> Any:
        return reasoning_parser_for(self._server_arg("reasoning_parser"), req.separate_reasoning,
                                    req.chat_template_kwargs)  # fmt: skip

    def build(self, req: ChatCompletionRequest, plan: Optional[ToolPlan] = None) -> list[Any]:
        req.refuse_unserved()
        # Before the chat template, which an embedding model may lack (its error would mislead).
        if not getattr(self.tm.model_config, "is_generation", True):
            raise EngineError(EMBEDDING_SERVER, 400, "model")
        plan = plan if plan is not None else self.tool_plan(req)
        if req.top_logprobs is not None:
            if not req.logprobs:
                raise EngineError("top_logprobs requires logprobs to be true.", 400,
                                  "top_logprobs")  # fmt: skip
            if not 0 <= req.top_logprobs <= MAX_TOP_LOGPROBS:
                raise EngineError(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}].", 400,
                                  "top_logprobs")  # fmt: skip
        if req.continue_final_message and req.messages and req.messages[-1].role != "assistant":
            raise EngineError("continue_final_message needs a final assistant message.", 400,
                              "continue_final_message")  # fmt: skip
        tokenizer = getattr(self.tm, "tokenizer", None)
        template = self._server_arg("chat_template") or getattr(tokenizer, "chat_template", None)
        messages, tool_kwargs = render_history(self.messages(req), req.messages, plan,
                                               template_reads_tools(template))  # fmt: skip
        try:
            ids = self.tm.apply_chat_template(
                messages,
                add_generation_prompt=not req.continue_final_message,
                continue_final_message=req.continue_final_message,
                **tool_kwargs,
                **(req.chat_template_kwargs or {}),
            )
        except EngineError:
            raise
        except Exception as e:  # a template that rejects this conversation
            raise EngineError(f"Cannot apply the chat template: {e}", 400, "messages") from None
        ids = list(ids)
        params = self.sampling_params(req, req.max_completion_tokens or req.max_tokens)
        if plan.constraint is not None:  # tool_choice required / named: the call is forced
            params = msgspec.structs.replace(params, json_schema=plan.constraint, regex=None,
                                             ebnf=None)  # fmt: skip
        reqs = self.expand(
            [(None, ids)], params, req.n, req.rid, req.stream,
            logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0,
        )  # fmt: skip
        # The templated messages are appended to the session's conversation, as on /generate.
        session = checked_session(req.session_params, 1, req.n)
        for r in reqs:
            r.session_params = session
        reasoning = self._reasoning(req)
        if reasoning is not None and reasoning.force and constraint_key(params) is not None:
            for r in reqs:  # the output opens inside <think>: constrain only what follows
                r.grammar_after = THINK_END
        return reqs

    async def create(self, req: ChatCompletionRequest) -> bytes | AsyncIterator[bytes]:
        await self.grammar_ready(req)
        plan = self.tool_plan(req)
        # Templating + tokenizing a long conversation would stall every stream on this loop.
        long = text_size([m.content for m in req.messages]) > INLINE_CHARS
        reqs = await offload(self.build, req, plan) if long else self.build(req, plan)
        if req.stream:
            updates = await self.primed(self.stream_all(reqs))
            return self._stream(req, updates, self.num_choices(reqs), plan)
        finals = await self.collect(reqs)
        choices = []
        for i, out in enumerate(finals):
            reason, matched = finish_reason(out)
            message, has_calls = build_message(out.text, plan, self._reasoning(req))
            if has_calls and reason == "stop":
                reason = "tool_calls"
            choices.append(ChatCompletionChoice(
                index=i, message=message,
                logprobs=self._logprobs(out, 0) if req.logprobs else None,
                finish_reason=reason, matched_stop=matched,
            ))  # fmt: skip
        resp = ChatCompletionResponse(
            id=new_id("chatcmpl-"), model=self.model_name, choices=choices,
            usage=self.usage(finals, req.n),
        )  # fmt: skip
        return encode(resp)

    async def _stream(
        self, req: ChatCompletionRequest, updates: AsyncIterator[tuple[int, GenerateOutput]],
        num_choices: int, plan: ToolPlan,
    ) -> AsyncIterator[bytes]:  # fmt: skip
        rid, created, model = new_id("chatcmpl-"), int(time.time()), self.model_name
        parsers = [ChoiceStream(plan, self._reasoning(req), req.stream_reasoning)
                   for _ in range(num_choices)]  # fmt: skip
        finals: list[Optional[GenerateOutput]] = [None] * num_choices
        sent_lp = [0] * num_choices
        try:
            for i in range(num_choices):
                role = ChatStreamChoice(index=i, delta=DeltaMessage(role="assistant", content=""))
                yield sse(ChatCompletionChunk(id=rid, created=created, model=model,
                                              choices=[role]))  # fmt: skip
            async for i, out in updates:
                finals[i] = out
                reason, matched = finish_reason(out) if out.finished else (None, None)
                delta = parsers[i].feed(out.delta_text, final=out.finished)
                if delta is None and reason is None:
                    continue
                if parsers[i].has_calls and reason == "stop":
                    reason = "tool_calls"
                logprobs = None
                if req.logprobs:
                    logprobs = self._logprobs(out, sent_lp[i])
                    sent_lp[i] = out.completion_tokens
                choice = ChatStreamChoice(
                    index=i, delta=delta or DeltaMessage(),
                    logprobs=logprobs, finish_reason=reason, matched_stop=matched,
                )  # fmt: skip
                yield sse(ChatCompletionChunk(id=rid, created=created, model=model,
                                              choices=[choice], usage=self.chunk_usage(req, out)))  # fmt: skip
            if req.stream_options is not None and req.stream_options.include_usage:
                done = [f for f in finals if f is not None]
                yield sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[],
                                              usage=self.usage(done, req.n)))  # fmt: skip
        except EngineError as e:
            yield sse(error_body(e.message, e.status, e.param))
        yield sse_done()

    def _logprobs(self, out: GenerateOutput, start: int) -> ChoiceLogprobs:
        tokens = (out.output_token_logprobs or [])[start : out.completion_tokens]
        tops = (out.output_top_logprobs or [])[start:]
        content = []
        for k, lp in enumerate(tokens):
            text = self.token_text(lp)
            top = [
                TopLogprob(token=(t := self.token_text(x)), logprob=x.logprob,
                           bytes=list(t.encode()))
                for x in (tops[k] if k < len(tops) and tops[k] else [])
            ]  # fmt: skip
            content.append(TokenLogprobInfo(token=text, logprob=lp.logprob,
                                            bytes=list(text.encode()), top_logprobs=top))  # fmt: skip
        return ChoiceLogprobs(content=content)
