"""Llama 3.x JSON format: optional `<|python_tag|>`, then `{"name": ..., "parameters": {...}}`
objects separated by `;`. Content is what precedes the first call."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    ToolCallDetector,
    held_back,
    parse_json_calls,
)

TAG = "<|python_tag|>"
_CALL_START = '{"name"'


class Llama3Detector(ToolCallDetector):
    name = "llama3"

    def _first_call(self, text: str) -> int:
        tag = text.find(TAG)
        if tag >= 0:
            return tag
        stripped = text.lstrip()
        if stripped.startswith("{") and '"name"'.startswith(stripped[1:].lstrip()[:6]):
            return len(text) - len(stripped)  # the output opens with a JSON call
        return text.find(_CALL_START)

    def parse(self, text: str, final: bool) -> ParseResult:
        start = self._first_call(text)
        if start < 0:
            keep = 0 if final else max(held_back(text, TAG), held_back(text, _CALL_START))
            return ParseResult(content=text[: len(text) - keep])
        res = ParseResult(content=text[:start])
        pos = start + len(TAG) if text.startswith(TAG, start) else start
        res.calls.extend(parse_json_calls(text, pos, ("parameters", "arguments"), final))
        return res
