"""Hermes / Qwen2.5 format: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`,
repeated for parallel calls; text before the first call is content."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    ToolCallDetector,
    held_back,
    parse_json_call,
)

START, END = "<tool_call>", "</tool_call>"


class HermesDetector(ToolCallDetector):
    name = "hermes"

    def parse(self, text: str, final: bool) -> ParseResult:
        first = text.find(START)
        if first < 0:
            keep = 0 if final else held_back(text, START)
            return ParseResult(content=text[: len(text) - keep])
        res = ParseResult(content=text[:first])
        pos = first
        while pos >= 0:
            body_start = pos + len(START)
            end = text.find(END, body_start)
            body = text[body_start:] if end < 0 else text[body_start:end]
            res.calls.append(parse_json_call(body, ("arguments",), final=final or end >= 0))
            if end < 0:
                break
            pos = text.find(START, end + len(END))
        return res
