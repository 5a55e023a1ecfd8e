"""The assistant message of a chat choice from its output text: reasoning split
(--reasoning-parser), then tool calls (forced by a grammar, or parsed by --tool-call-parser).
`ChoiceStream` does the same incrementally for SSE deltas."""

from __future__ import annotations

import uuid
from typing import Any, Optional

from radixserve.entrypoints.openai.protocol import ChatResponseMessage, DeltaMessage
from radixserve.entrypoints.openai.tool_support import ToolPlan
from radixserve.parsers.reasoning import ReasoningParser, StreamingReasoningParser


def reasoning_parser_for(name: Optional[str], separate: bool,
                         template_kwargs: Optional[dict[str, Any]]) -> Optional[ReasoningParser]:  # fmt: skip
    """None when the request keeps reasoning in content (no parser, separate_reasoning false,
    or qwen3 with enable_thinking false: no <think> section then)."""
    if name is None or not separate:
        return None
    if name == "qwen3" and (template_kwargs or {}).get("enable_thinking") is False:
        return None
    return ReasoningParser(name)


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def build_message(text: str, plan: ToolPlan,
                  reasoning: Optional[ReasoningParser]) -> tuple[ChatResponseMessage, bool]:  # fmt: skip
    """(message, whether it holds tool calls)."""
    reasoning_text = None
    if reasoning is not None:
        split = reasoning.split(text, final=True)
        reasoning_text, text = split.reasoning or None, split.content
    detector = plan.detector()
    calls: list[dict[str, Any]] = []
    if detector is not None:
        text, found = detector.detect_and_parse(text)
        calls = [{"id": call_id(), "type": "function", "function": c} for c in found]
    content = text if (text or not calls) else None
    msg = ChatResponseMessage(content=content, reasoning_content=reasoning_text,
                              tool_calls=calls or None)  # fmt: skip
    return msg, bool(calls)


class ChoiceStream:
    """One choice's deltas: feed(delta_text, final) -> DeltaMessage or None."""

    def __init__(self, plan: ToolPlan, reasoning: Optional[ReasoningParser],
                 stream_reasoning: bool = True) -> None:  # fmt: skip
        self.reasoning = StreamingReasoningParser(reasoning) if reasoning else None
        self.tools = plan.stream_parser()
        self.stream_reasoning = stream_reasoning
        self.held_reasoning = ""
        self.has_calls = False

    def feed(self, delta: str, final: bool) -> Optional[DeltaMessage]:
        reasoning, content = "", delta
        if self.reasoning is not None:
            reasoning, content = self.reasoning.feed(delta, final)
            if not self.stream_reasoning:  # sent in one piece when the choice ends
                self.held_reasoning += reasoning
                reasoning = self.held_reasoning if final else ""
        calls = None
        if self.tools is not None:
            content, deltas = self.tools.feed(content, final)
            if deltas:
                self.has_calls = True
                calls = []
                for d in deltas:
                    fn: dict[str, Any] = {"arguments": d.arguments}
                    item: dict[str, Any] = {"index": d.index, "function": fn}
                    if d.name is not None:
                        fn["name"] = d.name
                        item.update(id=call_id(), type="function")
                    calls.append(item)
        if not (reasoning or content or calls):
            return None
        return DeltaMessage(content=content or None, reasoning_content=reasoning or None,
                            tool_calls=calls)  # fmt: skip
