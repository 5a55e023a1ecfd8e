"""Reasoning separation: the `<think> ... </think>` section of an output becomes
reasoning_content, the rest content.

- deepseek-r1: its chat template already opened `<think>`, so the output starts inside the
  reasoning section (a `<think>` the model writes anyway is dropped).
- qwen3: reasoning only when the output opens `<think>`; with chat_template_kwargs
  enable_thinking=true the template may have opened it, as for deepseek-r1.
Streaming is a diff of two parses of the text so far; a suffix that may be the start of a tag
is held back until the next chunk decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from radixserve.parsers.tool_call.base import held_back

THINK_START, THINK_END = "<think>", "</think>"
PARSERS = ("deepseek-r1", "qwen3")


@dataclass
class ReasoningSplit:
    reasoning: str
    content: str
    in_reasoning: bool  # the section has not ended yet


class ReasoningParser:
    def __init__(self, name: str, force_reasoning: bool = False) -> None:
        if name not in PARSERS:
            raise ValueError(f"unknown reasoning parser {name!r}")
        self.name = name
        self.force = force_reasoning or name == "deepseek-r1"

    def split(self, text: str, final: bool = True) -> ReasoningSplit:
        stripped = text.lstrip()
        if stripped.startswith(THINK_START):
            body = stripped[len(THINK_START) :]
        elif self.force:
            body = text
        elif not final and THINK_START.startswith(stripped):
            return ReasoningSplit("", "", True)  # may still become "<think>"
        else:
            return ReasoningSplit("", text, False)
        end = body.find(THINK_END)
        if end < 0:
            keep = 0 if final else held_back(body, THINK_END)
            return ReasoningSplit(body[: len(body) - keep], "", True)
        return ReasoningSplit(body[:end], body[end + len(THINK_END) :].lstrip("\n"), False)


class StreamingReasoningParser:
    """feed(delta) -> (reasoning delta, content delta)."""

    def __init__(self, parser: ReasoningParser) -> None:
        self.parser = parser
        self.text = ""
        self.sent_reasoning = 0
        self.sent_content = 0

    def feed(self, delta: str, final: bool = False) -> tuple[str, str]:
        self.text += delta
        s = self.parser.split(self.text, final)
        r, c = s.reasoning[self.sent_reasoning :], s.content[self.sent_content :]
        self.sent_reasoning = max(self.sent_reasoning, len(s.reasoning))
        self.sent_content = max(self.sent_content, len(s.content))
        return r, c
