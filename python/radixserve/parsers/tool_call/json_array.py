"""The format our own grammar forces for tool_choice required / named (as SGLang does):
a JSON array `[{"name": ..., "parameters": {...}}, ...]`, nothing else."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    ToolCallDetector,
    parse_json_calls,
)


class JsonArrayDetector(ToolCallDetector):
    name = "json_array"

    def parse(self, text: str, final: bool) -> ParseResult:
        res = ParseResult(content="")
        pos = text.find("[")
        if pos < 0:
            return res
        res.calls.extend(parse_json_calls(text, pos, ("parameters",), final))
        return res
