"""Per-request limits of the TokenizerManager: the waiting-queue cap and the request timeout.

`RetryLaterError` is an EngineError whose HTTP answer carries a Retry-After header (the app's
error handler copies `headers`), used for a full queue (503) and for rate limits (429).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from radixserve.engine.io_struct import EngineError


class RetryLaterError(EngineError):
    def __init__(self, message: str, status: int, retry_after: int) -> None:
        super().__init__(message, status)
        self.headers = {"Retry-After": str(max(1, int(retry_after)))}


def check_queue(in_flight: int, new: int, args: Any) -> None:
    """Refuse `new` requests when the requests beyond the running ones would exceed
    --max-queued-requests (the queue is everything the scheduler cannot run at once)."""
    cap = args.max_queued_requests
    if cap is None:
        return
    queued = in_flight + new - args.max_running_requests
    if queued > cap:
        raise RetryLaterError(
            f"The server is overloaded: {cap} requests are already waiting "
            "(--max-queued-requests). Retry later.",
            503,
            retry_after=1,
        )


class Deadline:
    """The --request-timeout of one request; `get` waits on its queue until then."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.timeout = timeout
        loop = asyncio.get_running_loop()
        self.at = None if timeout is None else loop.time() + timeout

    async def get(self, queue: asyncio.Queue[Any]) -> Any:
        if self.at is None:
            return await queue.get()
        left = self.at - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(queue.get(), max(0.0, left))
        except asyncio.TimeoutError:
            raise EngineError(
                f"The request timed out after {self.timeout:g} s (--request-timeout); "
                "it was aborted.",
                504,
            ) from None
