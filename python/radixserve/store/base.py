"""The store interface: what the files, batches and responses code may ask of a database.

Records are the API objects themselves (JSON-able dicts) plus a few indexed columns, so a
different SQL database only has to implement these methods. Every write is one transaction:
after a crash a record is in its old or its new state, never in between.
"""

from __future__ import annotations

import errno
from typing import Any, Optional, Protocol

Record = dict[str, Any]
# errno values that mean "the disk (or this process's share of it) is full".
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class StoreFullError(Exception):
    """The disk is full: the write was not made and the store is unchanged."""


class Store(Protocol):
    # kind is "file", "batch" or "response"; ids are unique across kinds.
    def put(self, kind: str, record: Record) -> None:
        """Insert or replace the record `record["id"]` (its `status`/`created_at` indexed)."""

    def get(self, kind: str, record_id: str) -> Optional[Record]: ...

    def delete(self, kind: str, record_id: str) -> bool: ...

    def page(self, kind: str, *, limit: int, after: Optional[str] = None, order: str = "desc",
             where: Optional[dict[str, str]] = None) -> tuple[list[Record], bool]:  # fmt: skip
        """A page of records by created_at (then id), starting after the id `after`;
        `where` filters on top-level string fields. Returns (records, has_more)."""

    def with_status(self, kind: str, statuses: tuple[str, ...]) -> list[Record]: ...

    # Results of batch lines: each committed once, keyed by (batch id, line index).
    def add_line_results(self, batch_id: str, rows: list[tuple[int, bool, bytes]]) -> int:
        """Record (line index, ok, output) rows in one transaction; a line already recorded
        keeps its first output. Returns how many rows were new. May be called from a worker
        thread while the event loop thread reads."""

    def line_results(self, batch_id: str) -> list[tuple[int, bool, bytes]]: ...

    def line_counts(self, batch_id: str) -> tuple[int, int]:
        """(succeeded, failed) lines recorded so far."""

    def close(self) -> None: ...
