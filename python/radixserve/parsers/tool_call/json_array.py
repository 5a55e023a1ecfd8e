"""The format our own grammar forces for tool_choice required / named (as SGLang does):
a JSON array `[{"name": ..., "parameters": {...}}, ...]`, nothing else."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    ToolCallDetector,
    json_value_end,
    parse_json_call,
)


class JsonArrayDetector(ToolCallDetector):
    name = "json_array"

    def parse(self, text: str, final: bool) -> ParseResult:
        res = ParseResult(content="")
        pos = text.find("[")
        if pos < 0:
            return res
        while True:
            obj = text.find("{", pos)
            if obj < 0:
                break
            end = json_value_end(text, obj)
            body = text[obj:] if end < 0 else text[obj:end]
            res.calls.append(parse_json_call(body, ("parameters",), final=final or end >= 0))
            if end < 0:
                break
            pos = end
        return res
