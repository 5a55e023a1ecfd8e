"""Pythonic format (Llama 4, some Llama 3.2 prompts): `[get_weather(city="Paris"), f(x=1)]`.

Each call is sent whole once it is complete (its arguments, as JSON, in one delta): Python
keyword arguments have no partial JSON form to stream.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from radixserve.parsers.tool_call.base import ParseResult, PartialCall, ToolCallDetector

_HEAD_CHARS = "[ \n\t"


def _literal(node: ast.expr) -> Any:
    value = ast.literal_eval(node)
    return value


def _calls_of(src: str) -> list[PartialCall] | None:
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError:
        return None
    if not isinstance(tree.body, ast.List):
        return None
    calls = []
    for el in tree.body.elts:
        if not isinstance(el, ast.Call) or not isinstance(el.func, ast.Name) or el.args:
            return None
        try:
            kwargs = {kw.arg: _literal(kw.value) for kw in el.keywords if kw.arg}
        except (ValueError, SyntaxError):
            return None
        calls.append(PartialCall(el.func.id, json.dumps(kwargs, ensure_ascii=False), True))
    return calls


class PythonicDetector(ToolCallDetector):
    name = "pythonic"

    def parse(self, text: str, final: bool) -> ParseResult:
        start = text.find("[")
        if start < 0 or text[:start].strip():
            # Calls must open the output; anything else is content.
            return ParseResult(content=text)
        head = text[start + 1 :].lstrip()
        if head and not (head[0].isalpha() or head[0] == "_"):
            return ParseResult(content=text)
        end = text.rfind("]")
        if end >= 0:
            calls = _calls_of(text[start : end + 1])
            if calls is not None:
                return ParseResult(content=text[:start] + text[end + 1 :].strip(), calls=calls)
        if final:
            return ParseResult(content=text)
        # Still being written: hold everything back; send the calls that are complete so far.
        return ParseResult(content="", calls=_complete_prefix(text[start:]))


def _complete_prefix(src: str) -> list[PartialCall]:
    """The calls of `[a(...), b(...` that are finished (closing the list after each)."""
    best: list[PartialCall] = []
    for i, ch in enumerate(src):
        if ch == ")":
            calls = _calls_of(src[: i + 1] + "]")
            if calls is not None:
                best = calls
    return best
