"""SGLang's parsing helpers over finished text: /parse_function_call (tool calls) and
/separate_reasoning (the think section). They run the same parsers as chat completions; the
parser is the request's, else the server's --tool-call-parser / --reasoning-parser."""

from __future__ import annotations

from typing import Any, Optional

import msgspec
from litestar import Request, Response, post

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openapi import with_body
from radixserve.entrypoints.serving_common import encode
from radixserve.entrypoints.state import decode, get_state, json_response
from radixserve.parsers.reasoning import PARSERS as REASONING_PARSERS
from radixserve.parsers.reasoning import ReasoningParser
from radixserve.parsers.tool_call import DETECTORS, make_detector


class ParseFunctionCallReq(msgspec.Struct, kw_only=True):
    text: str
    tools: list[dict[str, Any]] = msgspec.field(default_factory=list)
    tool_call_parser: Optional[str] = None


class SeparateReasoningReq(msgspec.Struct, kw_only=True):
    text: str
    reasoning_parser: Optional[str] = None


def _parser_name(request: Request[Any, Any, Any], given: Optional[str], flag: str,
                 known: Any) -> str:  # fmt: skip
    name = given or getattr(get_state(request).server_args, flag, None)
    if not name:
        raise EngineError(f"{flag} must be given (this server was started without "
                          f"--{flag.replace('_', '-')}).", 400, flag)  # fmt: skip
    if name not in known:
        raise EngineError(f"{flag} {name!r} is not one of {', '.join(sorted(known))}.", 400,
                          flag)  # fmt: skip
    return str(name)


def _tool_names(tools: list[dict[str, Any]]) -> list[str]:
    """The function names of OpenAI tools ({"type": "function", "function": {"name"}}); a bare
    function object is read as well."""
    names = []
    for k, tool in enumerate(tools):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise EngineError(f"tools[{k}] must be {{\"type\": \"function\", \"function\": "
                              f"{{\"name\": ...}}}}.", 400, "tools")  # fmt: skip
        names.append(fn["name"])
    return names


@post("/parse_function_call", status_code=200, operation_class=with_body(ParseFunctionCallReq))
async def parse_function_call(request: Request[Any, Any, Any]) -> Response[bytes]:
    """{"normal_text", "calls": [{"tool_index", "name", "parameters"}]}; a call to a function
    that is not in tools is dropped, as SGLang does."""
    req = decode(await request.body(), ParseFunctionCallReq)
    name = _parser_name(request, req.tool_call_parser, "tool_call_parser", DETECTORS)
    names = _tool_names(req.tools)
    normal_text, calls = make_detector(name).detect_and_parse(req.text)
    items = [{"tool_index": names.index(c["name"]), "name": c["name"],
              "parameters": c["arguments"]} for c in calls if c["name"] in names]  # fmt: skip
    return json_response(encode({"normal_text": normal_text, "calls": items}))


@post("/separate_reasoning", status_code=200, operation_class=with_body(SeparateReasoningReq))
async def separate_reasoning(request: Request[Any, Any, Any]) -> Response[bytes]:
    """{"text": the content after the think section, "reasoning_text": the section}."""
    req = decode(await request.body(), SeparateReasoningReq)
    name = _parser_name(request, req.reasoning_parser, "reasoning_parser", REASONING_PARSERS)
    split = ReasoningParser(name).split(req.text)
    return json_response(encode({"text": split.content, "reasoning_text": split.reasoning}))


HANDLERS = [parse_function_call, separate_reasoning]
