"""What the files, batches and responses routes share: the durable store and its helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from litestar import Request

from radixserve.engine.io_struct import EngineError
from radixserve.store import BlobStore, Store

MAX_LIST_LIMIT = 10_000


@dataclass
class StoreServices:
    store: Store
    blobs: BlobStore
    max_file_size: int
    batches: Any = None  # BatchRunner, set once the engine is up
    responses: Any = None  # ServingResponses


def get_services(request: Request[Any, Any, Any]) -> StoreServices:
    services: Optional[StoreServices] = getattr(request.app.state, "durable", None)
    if services is None:
        raise EngineError("The server is starting; try again shortly.", 503)
    return services


def page_args(request: Request[Any, Any, Any], default_limit: int) -> tuple[int, Optional[str],
                                                                            str]:  # fmt: skip
    """limit, after and order from the query string, each checked (400 when bad)."""
    q = request.query_params
    raw = q.get("limit")
    try:
        limit = default_limit if raw is None else int(raw)
    except ValueError:
        raise EngineError(f"limit must be an integer, got {raw!r}.", 400, "limit") from None
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise EngineError(f"limit must be in [1, {MAX_LIST_LIMIT}], got {limit}.", 400, "limit")
    order = q.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise EngineError(f"order must be 'asc' or 'desc', got {order!r}.", 400, "order")
    return limit, q.get("after"), order


def list_page(records: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list", "data": records, "has_more": has_more,
        "first_id": records[0]["id"] if records else None,
        "last_id": records[-1]["id"] if records else None,
    }  # fmt: skip


def not_found(kind: str, record_id: str, param: str) -> EngineError:
    return EngineError(f"No {kind} found with id {record_id!r}.", 404, param)
