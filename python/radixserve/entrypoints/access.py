"""Who may call the server and how often: API keys (--api-key, --api-key-file) and per-key
rate limits (--rate-limit-per-minute), as one Litestar guard.

Keys are compared with hmac.compare_digest against every accepted key (no early exit on the
first match), so the time taken does not reveal which key, or how much of one, matched.
Health and metrics stay open for probes and scrapers unless --protect-metrics.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Optional

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from radixserve.args_help import read_api_keys
from radixserve.engine.limits import RetryLaterError

OPEN_PATHS = ("/health", "/health_generate", "/metrics")
WINDOW = 60.0

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def accepted_keys(server_args: Any) -> list[bytes]:
    keys = [server_args.api_key] if server_args.api_key else []
    if server_args.api_key_file:
        keys += read_api_keys(server_args.api_key_file)
    return [k.encode() for k in keys]


def match_key(given: bytes, keys: list[bytes]) -> Optional[bytes]:
    found: Optional[bytes] = None
    for key in keys:  # every key is compared, whatever matched before
        if hmac.compare_digest(given, key):
            found = key
    return found


class RateLimiter:
    """At most `per_minute` requests per client in any sliding 60 s window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.hits: dict[bytes, deque[float]] = {}

    def check(self, client: bytes) -> None:
        now = time.monotonic()
        hits = self.hits.setdefault(client, deque())
        while hits and hits[0] <= now - WINDOW:
            hits.popleft()
        if len(hits) >= self.per_minute:
            wait = math.ceil(hits[0] + WINDOW - now)
            raise RetryLaterError(
                f"Rate limit exceeded: {self.per_minute} requests per minute "
                "(--rate-limit-per-minute). Retry later.",
                429,
                retry_after=wait,
            )
        hits.append(now)
        if len(self.hits) > 10_000:  # forget idle clients (many distinct addresses)
            for k in [k for k, v in self.hits.items() if not v or v[-1] <= now - WINDOW]:
                del self.hits[k]


def access_guards(server_args: Any) -> list[Guard]:
    keys = accepted_keys(server_args)
    per_minute = server_args.rate_limit_per_minute
    if not keys and not per_minute:
        return []
    limiter = RateLimiter(per_minute) if per_minute else None
    open_paths = () if server_args.protect_metrics else OPEN_PATHS

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.url.path in open_paths:
            return
        client: Optional[bytes]
        if keys:
            auth = connection.headers.get("authorization", "")
            scheme, _sep, token = auth.partition(" ")
            client = match_key(token.strip().encode(), keys) if scheme.lower() == "bearer" else None
            if client is None:
                raise NotAuthorizedException("Invalid or missing API key (Authorization: Bearer).")
        else:
            client = (connection.client.host if connection.client else "unknown").encode()
        if limiter is not None:
            limiter.check(client)

    return [guard]
