"""Run blocking CPU work (chat templating, tokenization) off the asyncio event loop.

One worker thread: the HTTP loop keeps streaming tokens to other clients while a long prompt
is templated and tokenized, and HF fast tokenizers are never entered by two threads at once
(concurrent calls can fail with "Already borrowed" when they adjust truncation settings).
Short inputs run inline: handing them to a thread costs more than it saves.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
INLINE_CHARS = 256  # below this much text, tokenizing takes microseconds: stay on the loop

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radixserve-tokenize")


async def offload(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


def text_size(obj: Any) -> int:
    """Characters of text in a prompt, message list or request (a cheap upper estimate)."""
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, (list, tuple)):
        return sum(text_size(x) for x in obj)
    if isinstance(obj, dict):
        return sum(text_size(v) for v in obj.values())
    content = getattr(obj, "content", None) or getattr(obj, "text", None)
    return text_size(content) if content is not None else 0
