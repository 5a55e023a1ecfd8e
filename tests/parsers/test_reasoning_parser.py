"""Reasoning separation on recorded outputs, whole and streamed in chunks."""

from __future__ import annotations

import pytest

from radixserve.parsers.reasoning import ReasoningParser, StreamingReasoningParser

R1 = "The user wants 2+2. That is 4.</think>\n\nThe answer is 4."
QWEN = "<think>\nShort thought.\n</think>\n\nHello!"


def _stream(parser: ReasoningParser, text: str, size: int) -> tuple[str, str]:
    sp = StreamingReasoningParser(parser)
    r = c = ""
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    for k, chunk in enumerate(chunks):
        dr, dc = sp.feed(chunk, final=k == len(chunks) - 1)
        r, c = r + dr, c + dc
    return r, c


@pytest.mark.parametrize("size", [1, 2, 5, 100])
def test_deepseek_r1(size: int) -> None:
    p = ReasoningParser("deepseek-r1")
    s = p.split(R1)
    assert (s.reasoning, s.content) == ("The user wants 2+2. That is 4.", "The answer is 4.")
    assert _stream(p, R1, size) == (s.reasoning, s.content)
    # Unfinished reasoning is all reasoning; an explicit <think> is dropped.
    assert p.split("still thinking").reasoning == "still thinking"
    assert p.split("<think>a</think>b").content == "b"


@pytest.mark.parametrize("size", [1, 3, 100])
def test_qwen3(size: int) -> None:
    p = ReasoningParser("qwen3")
    s = p.split(QWEN)
    assert (s.reasoning, s.content) == ("\nShort thought.\n", "Hello!")
    assert _stream(p, QWEN, size) == (s.reasoning, s.content)
    assert p.split("No thinking here.").content == "No thinking here."
    assert _stream(p, "No <thinking> here.", size) == ("", "No <thinking> here.")


def test_partial_end_tag_is_held_back() -> None:
    sp = StreamingReasoningParser(ReasoningParser("deepseek-r1"))
    assert sp.feed("abc</thi") == ("abc", "")
    assert sp.feed("nk>done", final=True) == ("", "done")
