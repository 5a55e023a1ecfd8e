"""Tools in chat requests: validation, the prompt, the grammar of forced calls, the output.

- tools are checked (a name, a valid parameters schema); tool_choice is none | auto | required
  | {"type": "function", "function": {"name"}}.
- required / named: the output is forced, as SGLang does, by a JSON-schema grammar to the array
  `[{"name": <one of the tools>, "parameters": <that tool's schema>}, ...]` (one item when
  parallel_tool_calls is false), so the arguments validate against the tool's schema every
  time, whatever the model; it is parsed by JsonArrayDetector.
- auto: the output is parsed by the --tool-call-parser detector (no parser: plain content).
- The prompt: a template that reads `tools` gets them (and assistant tool_calls / tool messages
  as structured fields). A template that ignores them (SmolLM2's) gets what vLLM and SGLang do
  for such templates: a system prompt listing the tools and the call format of the parser,
  past calls written in that format, tool results as <tool_response> user turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from radixserve.constrained.base import InvalidGrammarError
from radixserve.constrained.xgrammar_backend import build_grammar
from radixserve.engine.io_struct import EngineError
from radixserve.parsers.tool_call import StreamingToolParser, ToolCallDetector, make_detector
from radixserve.parsers.tool_call.json_array import JsonArrayDetector

CALL_FORMATS = {
    "hermes": '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>',
    "qwen25": '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>',
    "llama3": '{"name": <function-name>, "parameters": <args-json-object>}',
    "mistral": '[TOOL_CALLS] [{"name": <function-name>, "arguments": <args-json-object>}]',
    "pythonic": "[function_name(arg1=value1, arg2=value2)]",
}


@dataclass
class ToolPlan:
    tools: list[dict[str, Any]] = field(default_factory=list)  # the "function" objects
    choice: str = "none"  # none | auto | required | named
    constraint: Optional[str] = None  # JSON schema string of a forced call
    parser: Optional[str] = None  # --tool-call-parser

    def detector(self) -> Optional[ToolCallDetector]:
        if self.choice in ("required", "named"):
            return JsonArrayDetector()
        if self.choice == "auto" and self.parser:
            return make_detector(self.parser)
        return None

    def stream_parser(self) -> Optional[StreamingToolParser]:
        d = self.detector()
        return StreamingToolParser(d) if d is not None else None


def _bad(message: str, param: str) -> EngineError:
    return EngineError(message, 400, param)


def plan_tools(tools: Optional[list[Any]], tool_choice: Any, parallel: Optional[bool],
               parser: Optional[str]) -> ToolPlan:  # fmt: skip
    funcs: list[dict[str, Any]] = []
    for k, tool in enumerate(tools or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _bad(f"tools[{k}] must be {{\"type\": \"function\", \"function\": {{...}}}}.", "tools")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"tools[{k}].function.name is required.", "tools")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise _bad(f"tools[{k}].function.parameters must be a JSON schema object.", "tools")
        try:
            build_grammar(("json_schema", json.dumps(params)))
        except InvalidGrammarError as e:
            raise _bad(f"tools[{k}].function.parameters: {e}", "tools") from None
        funcs.append({**fn, "parameters": params})
    names = [f["name"] for f in funcs]
    if len(set(names)) != len(names):
        raise _bad("tools: function names must be unique.", "tools")
    choice = tool_choice if tool_choice is not None else ("auto" if funcs else "none")
    plan = ToolPlan(tools=funcs, parser=parser)
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type", "function") != "function" or not isinstance(name, str):
            raise _bad('tool_choice must be {"type": "function", "function": {"name": ...}}.',
                       "tool_choice")  # fmt: skip
        if name not in names:
            raise _bad(f"tool_choice names the function {name!r}, which is not in tools.",
                       "tool_choice")  # fmt: skip
        plan.choice = "named"
        forced = [f for f in funcs if f["name"] == name]
    elif choice in ("none", "auto", "required"):
        plan.choice = choice
        if choice in ("auto", "required") and not funcs:
            raise _bad(f"tool_choice {choice!r} needs a non-empty tools list.", "tool_choice")
        forced = funcs if choice == "required" else []
    else:
        raise _bad("tool_choice must be none, auto, required or a named function.", "tool_choice")
    if forced:
        plan.constraint = json.dumps(_calls_schema(forced, parallel is not False))
    return plan


def _calls_schema(funcs: list[dict[str, Any]], parallel: bool) -> dict[str, Any]:
    items = [
        {"type": "object", "properties": {"name": {"const": f["name"]},
                                          "parameters": f["parameters"]},
         "required": ["name", "parameters"], "additionalProperties": False}
        for f in funcs
    ]  # fmt: skip
    schema: dict[str, Any] = {"type": "array", "minItems": 1,
                              "items": items[0] if len(items) == 1 else {"anyOf": items}}  # fmt: skip
    if not parallel:
        schema["maxItems"] = 1
    return schema


def template_reads_tools(template: Optional[str]) -> bool:
    return bool(template) and "tools" in str(template)


def render_history(messages: list[dict[str, Any]], raw: list[Any], plan: ToolPlan,
                   reads_tools: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Messages (and extra template kwargs) with tools, past calls and tool results."""
    out = []
    for msg, m in zip(messages, raw, strict=True):
        msg = dict(msg)
        calls = [c.get("function", c) for c in (m.tool_calls or []) if isinstance(c, dict)]
        if reads_tools:
            if calls:
                msg["tool_calls"] = [{"type": "function", "function": {
                    "name": c.get("name"), "arguments": _as_obj(c.get("arguments"))}}
                    for c in calls]  # fmt: skip
            if m.tool_call_id is not None:
                msg["tool_call_id"] = m.tool_call_id
        else:
            if calls:
                text = "\n".join(_format_call(c, plan.parser) for c in calls)
                msg["content"] = (msg["content"] + "\n" + text).strip()
            if msg["role"] == "tool":
                msg = {"role": "user", "content": f"<tool_response>\n{msg['content']}\n</tool_response>"}
        out.append(msg)
    if not plan.tools or plan.choice == "none":
        return out, {}
    if reads_tools:
        return out, {"tools": [{"type": "function", "function": f} for f in plan.tools]}
    listing = "\n".join(json.dumps({"type": "function", "function": f}) for f in plan.tools)
    fmt = CALL_FORMATS.get(plan.parser or "hermes", CALL_FORMATS["hermes"])
    prompt = ("You may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n"
              f"<tools>\n{listing}\n</tools>\n\n"
              f"For each function call, answer in this format:\n{fmt}")  # fmt: skip
    if out and out[0]["role"] == "system":
        out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out, {}


def _as_obj(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def _format_call(call: dict[str, Any], parser: Optional[str]) -> str:
    name, args = call.get("name"), _as_obj(call.get("arguments"))
    if parser == "llama3":
        return json.dumps({"name": name, "parameters": args})
    if parser == "mistral":
        return "[TOOL_CALLS] " + json.dumps([{"name": name, "arguments": args}])
    if parser == "pythonic" and isinstance(args, dict):
        return f"[{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")]"
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"
