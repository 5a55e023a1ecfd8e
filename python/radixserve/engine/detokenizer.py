"""Incremental detokenization, right across multi-byte characters split over tokens.

The prefix-offset / read-offset technique (as vLLM): decode a small window of already emitted
tokens (`prefix_offset:read_offset`) and the same window plus the new tokens; the new text is
the difference. Decoding a window rather than single tokens keeps SentencePiece leading spaces
right, and text ending in U+FFFD (an incomplete UTF-8 sequence) is held back until the next
token completes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

_REPLACEMENT = "\ufffd"
_PROMPT_CONTEXT = 5  # prompt tokens decoded as context before the first output token


class IncrementalDetokenizer:
    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: list[int],
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.kwargs: dict[str, Any] = {"skip_special_tokens": skip_special_tokens}
        if not spaces_between_special_tokens:
            self.kwargs["spaces_between_special_tokens"] = False
        self.backend_decode = _backend_decode(tokenizer)
        context = list(prompt_ids[-_PROMPT_CONTEXT:])
        self.ids: list[int] = context
        self.num_context = len(context)
        self.prefix_offset = 0
        self.read_offset = len(context)
        self.text = ""
        self.out: list[int] = []  # the output ids, kept apart so reading them copies nothing

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        if self.backend_decode is not None:
            return str(self.backend_decode(ids, self.kwargs["skip_special_tokens"]))
        return str(self.tokenizer.decode(ids, **self.kwargs))

    def add(self, new_ids: list[int]) -> str:
        """Append output tokens; return the text they completed (maybe empty)."""
        if not new_ids:
            return ""
        self.ids.extend(new_ids)
        self.out.extend(new_ids)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(_REPLACEMENT):
            delta = new_text[len(prefix_text) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """At the end: emit whatever is still held back (it may really end in U+FFFD)."""
        if self.read_offset >= len(self.ids):
            return ""
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        delta = new_text[len(prefix_text) :] if new_text.startswith(prefix_text) else ""
        self.prefix_offset = self.read_offset = len(self.ids)
        self.text += delta
        return delta

    @property
    def output_ids(self) -> list[int]:
        """The live list (append-only): copy it to keep a snapshot."""
        return self.out


def _backend_decode(tokenizer: Any) -> Optional[Callable[[list[int], bool], str]]:
    """The Rust `tokenizers` decode behind a transformers fast tokenizer, when calling it gives
    exactly `tokenizer.decode`'s text: transformers' fast `_decode` is that call followed by an
    optional clean-up of spaces, and the wrapper's argument conversion costs several times the
    decode itself (two decodes per streamed token). None: use `tokenizer.decode`."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or getattr(tokenizer, "clean_up_tokenization_spaces", True) is not False:
        return None
    decode = getattr(backend, "decode", None)
    if decode is None:
        return None

    def run(ids: list[int], skip_special_tokens: bool) -> str:
        return str(decode(ids, skip_special_tokens=skip_special_tokens))

    return run


def held_back_for_stop(text: str, stops: list[str]) -> int:
    """How many trailing chars of `text` could begin a stop string (not safe to stream yet)."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold
