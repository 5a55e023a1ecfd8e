"""Tool-call detectors on recorded outputs: whole text, and the same text fed in chunks
(streamed name + argument deltas must reassemble to the non-streamed calls)."""

from __future__ import annotations

import json

import pytest

from radixserve.parsers.tool_call import StreamingToolParser, make_detector
from radixserve.parsers.tool_call.json_array import JsonArrayDetector

CASES = {
    "hermes": (
        'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
        '"days": [1, 2]}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": '
        '{"tz": "CET \\"x\\" }"}}\n</tool_call>',
        "Let me check.",
        [("get_weather", {"city": "Paris", "days": [1, 2]}), ("get_time", {"tz": 'CET "x" }'})],
    ),
    "qwen25": (
        '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
        "",
        [("f", {})],
    ),
    "llama3": (
        '<|python_tag|>{"name": "search", "parameters": {"q": "a;b"}}; '
        '{"name": "open", "parameters": {"id": 3}}',
        "",
        [("search", {"q": "a;b"}), ("open", {"id": 3})],
    ),
    "mistral": (
        'Sure. [TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": {"c": [2]}}}, '
        '{"name": "neg", "arguments": {"x": -1.5}}]',
        "Sure. ",
        [("add", {"a": 1, "b": {"c": [2]}}), ("neg", {"x": -1.5})],
    ),
    "pythonic": (
        '[get_weather(city="Paris", unit=\'c\'), lookup(ids=[1, 2], exact=True)]',
        "",
        [("get_weather", {"city": "Paris", "unit": "c"}), ("lookup", {"ids": [1, 2], "exact": True})],
    ),
}


def _stream(parser: str, text: str, size: int) -> tuple[str, list[tuple[str, str]]]:
    sp = StreamingToolParser(make_detector(parser))
    content, names, args = "", [], []
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    for k, chunk in enumerate(chunks):
        c, deltas = sp.feed(chunk, final=k == len(chunks) - 1)
        content += c
        for d in deltas:
            if d.name is not None:
                assert d.index == len(names)
                names.append(d.name)
                args.append("")
            args[d.index] += d.arguments
    return content, list(zip(names, args, strict=True))


@pytest.mark.parametrize("parser", sorted(CASES))
def test_detect_and_parse(parser: str) -> None:
    text, content, expected = CASES[parser]
    got_content, calls = make_detector(parser).detect_and_parse(text)
    assert got_content.strip() == content.strip()
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == expected


@pytest.mark.parametrize("parser", sorted(CASES))
@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_streaming_reassembles_to_the_whole_parse(parser: str, size: int) -> None:
    text, _, expected = CASES[parser]
    content, calls = _stream(parser, text, size)
    whole_content, whole = make_detector(parser).detect_and_parse(text)
    assert content == whole_content
    assert [(n, a) for n, a in calls] == [(c["name"], c["arguments"]) for c in whole]
    assert [(n, json.loads(a)) for n, a in calls] == expected


def test_name_comes_before_arguments_and_partial_tags_are_held() -> None:
    sp = StreamingToolParser(make_detector("hermes"))
    c, d = sp.feed("Hi <tool_")
    assert c == "Hi " and d == []
    c, d = sp.feed('call>\n{"name": "get_w')
    assert c == "" and d == []
    c, d = sp.feed('eather", "arguments": {"ci')
    assert d[0].name == "get_weather" and d[0].arguments == '{"ci'
    c, d = sp.feed('ty": "Oslo"}}\n</tool_call>', final=True)
    assert d[0].name is None and d[0].arguments == 'ty": "Oslo"}'


@pytest.mark.parametrize("parser", sorted(CASES))
def test_plain_text_is_content(parser: str) -> None:
    text = "The weather is nice today."
    assert make_detector(parser).detect_and_parse(text) == (text, [])
    assert _stream(parser, text, 4) == (text, [])


def test_json_array_format_of_forced_calls() -> None:
    text = '[{"name":"f","parameters":{"a":"x"}},{"name":"g","parameters":{}}]'
    content, calls = JsonArrayDetector().detect_and_parse(text)
    assert content == "" and [(c["name"], c["arguments"]) for c in calls] == [
        ("f", '{"a":"x"}'), ("g", "{}")]
