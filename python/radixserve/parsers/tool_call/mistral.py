"""Mistral format: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    ToolCallDetector,
    held_back,
    parse_json_calls,
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
        res.calls.extend(parse_json_calls(text, pos, ("arguments", "parameters"), final))
        return res
