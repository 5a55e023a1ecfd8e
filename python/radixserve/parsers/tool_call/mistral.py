"""Mistral format: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    ToolCallDetector,
    held_back,
    json_value_end,
    parse_json_call,
)

TAG = "[TOOL_CALLS]"


class MistralDetector(ToolCallDetector):
    name = "mistral"

    def parse(self, text: str, final: bool) -> ParseResult:
        start = text.find(TAG)
        if start < 0:
            keep = 0 if final else held_back(text, TAG)
            return ParseResult(content=text[: len(text) - keep])
        res = ParseResult(content=text[:start])
        pos = start + len(TAG)
        while True:
            obj = text.find("{", pos)
            if obj < 0:
                break
            end = json_value_end(text, obj)
            body = text[obj:] if end < 0 else text[obj:end]
            res.calls.append(parse_json_call(body, ("arguments", "parameters"),
                                             final=final or end >= 0))  # fmt: skip
            if end < 0:
                break
            pos = end
        return res
