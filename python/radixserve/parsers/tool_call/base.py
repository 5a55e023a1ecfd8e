"""The tool-call detector interface and the incremental (streaming) driver.

A detector implements one method, `parse(text, final)`: from the output so far it returns how
much of the text is plain content for sure and the calls it can see, each with its name (once
complete) and the prefix of its raw arguments text. For every format here that prefix only
grows as text arrives, so streaming is a diff of two parses: the name is sent once, then
argument deltas, as OpenAI streams them; and the non-streaming result is the same parse on the
final text, so streamed deltas reassemble to exactly the non-streamed call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class PartialCall:
    name: Optional[str] = None  # None until the whole name has arrived
    arguments: str = ""  # raw JSON text of the arguments so far (a prefix of the final text)
    complete: bool = False


@dataclass
class ParseResult:
    content: str  # plain text (outside the calls) that is certain
    calls: list[PartialCall] = field(default_factory=list)


@dataclass
class ToolCallDelta:
    index: int
    name: Optional[str] = None  # set on the call's first delta, with its id
    arguments: str = ""


class ToolCallDetector:
    """Base of the format detectors; see the module docstring."""

    name = "base"

    def parse(self, text: str, final: bool) -> ParseResult:
        raise NotImplementedError

    def has_tool_call(self, text: str) -> bool:
        return bool(self.parse(text, final=True).calls)

    def detect_and_parse(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """(content, [{"name", "arguments"}]) of a finished output. Calls without a name are
        dropped; arguments are the raw JSON text the model wrote."""
        res = self.parse(text, final=True)
        calls = [{"name": c.name, "arguments": c.arguments or "{}"} for c in res.calls if c.name]
        return res.content, calls


class StreamingToolParser:
    """Feeds the growing output to a detector and yields (content delta, call deltas)."""

    def __init__(self, detector: ToolCallDetector) -> None:
        self.detector = detector
        self.text = ""
        self.sent_content = 0
        self.sent_names: list[bool] = []
        self.sent_args: list[int] = []

    def feed(self, delta: str, final: bool = False) -> tuple[str, list[ToolCallDelta]]:
        self.text += delta
        res = self.detector.parse(self.text, final)
        content = res.content[self.sent_content :]
        self.sent_content = max(self.sent_content, len(res.content))
        out: list[ToolCallDelta] = []
        for i, call in enumerate(res.calls):
            if i == len(self.sent_names):
                if call.name is None:
                    break  # calls stream in order: wait for this name
                self.sent_names.append(True)
                self.sent_args.append(0)
                out.append(ToolCallDelta(i, name=call.name))
            new = call.arguments[self.sent_args[i] :]
            if new:
                self.sent_args[i] = len(call.arguments)
                if out and out[-1].index == i:
                    out[-1].arguments += new
                else:
                    out.append(ToolCallDelta(i, arguments=new))
        return content, out


# -- helpers shared by the JSON formats ----------------------------------------------------


def held_back(text: str, marker: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of marker (may still become
    the marker, so it is not yet plain content)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


def json_value_end(text: str, start: int) -> int:
    """Index just past the JSON value starting at text[start] (after whitespace), or -1 if it is
    not complete yet. Strings and nesting are tracked; scalars end at , } ] or whitespace."""
    i = start
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    if i >= len(text):
        return -1
    depth, in_str, esc = 0, False, False
    scalar = text[i] not in "{[\""
    for j in range(i, len(text)):
        ch = text[j]
        if scalar:
            if ch in ",}] \t\r\n":
                return j
            continue
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                if depth == 0:
                    return j + 1
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


_NAME_RE = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


def parse_json_call(obj_text: str, arg_keys: tuple[str, ...] = ("arguments", "parameters"),
                    final: bool = False) -> PartialCall:  # fmt: skip
    """A call from the (possibly partial) text of one `{"name": ..., "arguments": {...}}`.
    Arguments are streamed only after the name, as models and our grammars write them."""
    call = PartialCall()
    m = _NAME_RE.search(obj_text)
    if m is None:
        return call
    call.name = json.loads(f'"{m.group(1)}"')
    keys = "|".join(re.escape(k) for k in arg_keys)
    a = re.compile(rf'"(?:{keys})"\s*:\s*').search(obj_text, m.end())
    if a is None:
        return call
    end = json_value_end(obj_text, a.end())
    raw = obj_text[a.end() : end] if end >= 0 else obj_text[a.end() :]
    call.arguments = raw.strip() if end >= 0 or final else raw.lstrip()
    call.complete = end >= 0
    return call


def parse_json_calls(text: str, pos: int, arg_keys: tuple[str, ...],
                     final: bool) -> list[PartialCall]:  # fmt: skip
    """Every `{"name": ..., <arg key>: {...}}` object from `pos` on, the last possibly partial."""
    calls: list[PartialCall] = []
    while True:
        obj = text.find("{", pos)
        if obj < 0:
            return calls
        end = json_value_end(text, obj)
        body = text[obj:] if end < 0 else text[obj:end]
        calls.append(parse_json_call(body, arg_keys, final=final or end >= 0))
        if end < 0:
            return calls
        pos = end
