"""What both processes know of sessions: the request fields, the control message, the errors.

A request continues earlier tokens in one of two ways (both carried by `SessionParams`):
- `id` set: an open session (/open_session); `rid` names the parent request of that session.
- `id` None: a recorded conversation (/extend); `rid` names the conversation, whose latest
  tokens (prompt and output of its last turn) the scheduler kept.
The scheduler builds the real prompt (parent tokens + new tokens) and rejects a bad reference
with a finish reason carrying `status_code`, which the TokenizerManager turns into an error.
"""

from __future__ import annotations

from typing import Optional

import msgspec

from radixserve.engine.finish_reason import FinishReason


class SessionParams(msgspec.Struct, kw_only=True):
    """SGLang's session_params: append to (or branch from) request `rid` of session `id`."""

    id: Optional[str] = None
    rid: Optional[str] = None
    # Python slice end into the parent's tokens: None or 0 keeps all, negative counts from the
    # end (SGLang's meaning).
    offset: Optional[int] = None
    replace: bool = False  # drop the parent's other branches (all requests when rid is None)


class SessionCtlReq(msgspec.Struct, tag=True, kw_only=True):
    """open / close / list sessions; the answer is [status, session id or message or ids]."""

    query_id: int
    op: str
    session_id: Optional[str] = None
    capacity: int = 0


def rejection(message: str, status: int) -> FinishReason:
    """A finish reason for a request refused before it ran (SGLang's abort with a status)."""
    return FinishReason(type="abort", message=message, status_code=status)


def rejected(finish_reason: Optional[FinishReason]) -> Optional[tuple[str, int]]:
    """(message, HTTP status) of a refused request; None for every normal update."""
    if finish_reason is None or finish_reason.status_code is None:
        return None
    return str(finish_reason.message), finish_reason.status_code
