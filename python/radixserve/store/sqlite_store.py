"""The Store over stdlib sqlite3: WAL journal, synchronous=FULL, one writer connection.

Calls come from the event loop thread (they are short), except batch line results, which the
batch runner commits in groups from a worker thread (each commit is an fsync, ~10 ms on a busy
disk). One connection serves both: writes take a lock (BEGIN..COMMIT of one thread at a time,
as sqlite3 asks of a connection shared between threads); reads need none. Each write is its
own transaction, committed (and fsynced by SQLite) before it returns.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import msgspec

from radixserve.store.base import FULL_ERRNOS, Record, StoreFullError

_KINDS = ("file", "batch", "response")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL, status TEXT,
    body BLOB NOT NULL, PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS records_by_time ON records (kind, created_at, id);
CREATE INDEX IF NOT EXISTS records_by_status ON records (kind, status);
CREATE TABLE IF NOT EXISTS line_results (
    batch_id TEXT NOT NULL, line INTEGER NOT NULL, ok INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (batch_id, line));
"""


class SQLiteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed write survives power loss
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self._write_lock = threading.Lock()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:  # one transaction at a time on the shared connection
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if "full" in str(e).lower() or getattr(e, "sqlite_errorcode", 0) == 13:
                    raise StoreFullError(f"The disk is full: {e}") from None
                raise
            except OSError as e:
                if e.errno in FULL_ERRNOS:
                    raise StoreFullError(f"The disk is full: {e}") from None
                raise

    @staticmethod
    def _check(kind: str) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown record kind {kind!r}")

    def put(self, kind: str, record: Record) -> None:
        self._check(kind)
        body = msgspec.json.encode(record)
        with self._write() as db:
            db.execute(
                # An upsert, not INSERT OR REPLACE: the rowid (creation order, the tie-break of
                # records created in the same second) must survive updates.
                "INSERT INTO records (kind, id, created_at, status, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET created_at = excluded.created_at, "
                "status = excluded.status, body = excluded.body",
                (kind, record["id"], int(record.get("created_at", 0)), record.get("status"), body),
            )

    def get(self, kind: str, record_id: str) -> Optional[Record]:
        row = self.db.execute("SELECT body FROM records WHERE kind = ? AND id = ?",
                              (kind, record_id)).fetchone()  # fmt: skip
        return None if row is None else _decode(row[0])

    def delete(self, kind: str, record_id: str) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, record_id))
            if kind == "batch":
                db.execute("DELETE FROM line_results WHERE batch_id = ?", (record_id,))
        return cur.rowcount > 0

    def page(self, kind: str, *, limit: int, after: Optional[str] = None, order: str = "desc",
             where: Optional[dict[str, str]] = None) -> tuple[list[Record], bool]:  # fmt: skip
        desc = order == "desc"
        sql = "SELECT body FROM records WHERE kind = ?"
        args: list[Any] = [kind]
        if after is not None:
            row = self.db.execute("SELECT created_at, rowid FROM records WHERE kind = ? AND id = ?",
                                  (kind, after)).fetchone()  # fmt: skip
            if row is not None:
                op = "<" if desc else ">"
                sql += f" AND (created_at, rowid) {op} (?, ?)"
                args += [row[0], row[1]]
        direction = "DESC" if desc else "ASC"
        # created_at has one-second resolution: rowid keeps same-second records in creation order
        sql += f" ORDER BY created_at {direction}, rowid {direction}"
        records: list[Record] = []
        for (body,) in self.db.execute(sql, args):  # stops reading after one page (+1)
            record = _decode(body)
            if all(record.get(k) == v for k, v in (where or {}).items()):
                records.append(record)
                if len(records) > limit:
                    break
        return records[:limit], len(records) > limit

    def with_status(self, kind: str, statuses: tuple[str, ...]) -> list[Record]:
        marks = ",".join("?" * len(statuses))
        rows = self.db.execute(
            f"SELECT body FROM records WHERE kind = ? AND status IN ({marks}) ORDER BY created_at",
            (kind, *statuses),
        )
        return [_decode(r[0]) for r in rows]

    def add_line_results(self, batch_id: str, rows: list[tuple[int, bool, bytes]]) -> int:
        with self._write() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO line_results VALUES (?, ?, ?, ?)",
                           [(batch_id, index, int(ok), line) for index, ok, line in rows])  # fmt: skip
            return db.total_changes - before

    def line_results(self, batch_id: str) -> list[tuple[int, bool, bytes]]:
        rows = self.db.execute("SELECT line, ok, body FROM line_results WHERE batch_id = ? "
                               "ORDER BY line", (batch_id,))  # fmt: skip
        return [(int(r[0]), bool(r[1]), bytes(r[2])) for r in rows]

    def line_counts(self, batch_id: str) -> tuple[int, int]:
        row = self.db.execute("SELECT COALESCE(SUM(ok), 0), COUNT(*) FROM line_results "
                              "WHERE batch_id = ?", (batch_id,)).fetchone()  # fmt: skip
        return int(row[0]), int(row[1]) - int(row[0])

    def close(self) -> None:
        self.db.close()


def _decode(body: bytes) -> Record:
    return msgspec.json.decode(body)  # type: ignore[no-any-return]
