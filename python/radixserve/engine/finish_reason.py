"""FinishReason: why a request stopped, one struct from the scheduler's Req to the API layers.

The scheduler sets it on the Req, sends it inside ipc.ReqUpdate (msgpack), the TokenizerManager
puts it on GenerateOutput, and the routes render it (OpenAI finish_reason, SGLang meta_info).
"""

from __future__ import annotations

from typing import Any, Optional

import msgspec


class FinishReason(msgspec.Struct, kw_only=True, omit_defaults=True):
    """SGLang's finish_reason: type is "stop", "length" or "abort"."""

    type: str
    matched: Optional[int | str] = None  # the stop token id or stop string that ended the output
    length: Optional[int] = None  # for "length"
    message: Optional[str] = None  # for "abort"
    # An abort the caller receives as this HTTP error instead of an output (a refused session).
    status_code: Optional[int] = None

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]
