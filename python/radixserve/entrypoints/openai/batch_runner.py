"""Runs batches from the durable store, resuming after a crash without losing or repeating.

Each line's result is committed to the store under (batch id, line index) the moment it is
known; the output and error files are built from those rows only when the batch finalizes.
So a restart (even after kill -9) runs just the lines with no row yet, and a line that ran
twice (it finished but was not yet committed at the crash) still appears once. Every step is
idempotent: validating -> in_progress -> finalizing -> completed (or failed, cancelling ->
cancelled, expired) can be redone from whatever state the store holds.

Line results are committed in groups from a worker thread (LineResultWriter): each commit is
an fsync (~10 ms on a busy disk), and a step that finishes 64 lines would otherwise hold the
event loop, and with it every online request, for over half a second. A line whose result was
not committed yet at a crash runs again on the next start, as before.

Lines run with the BACKGROUND flag set: the scheduler runs them only in steps with no online
work and preempts them for online requests (engine/schedule_policy.py), so `concurrency`
(lines in flight over all batches) can be high enough to fill an idle engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from radixserve.engine.io_struct import BACKGROUND
from radixserve.entrypoints.openai.batch_input import BatchLine, parse_batch_input
from radixserve.store import BlobStore, Store, StoreFullError

logger = logging.getLogger("radixserve.batch")
# (url, body) -> (status code, JSON response body): the online serving code for that url.
Execute = Callable[[str, dict[str, Any]], Awaitable[tuple[int, bytes]]]
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
FINISHED = ("completed", "failed", "expired", "cancelled")
_encoder = msgspec.json.Encoder()


def output_file_ids(batch_id: str) -> tuple[str, str]:
    """Fixed ids, so redoing a finalization after a crash replaces rather than duplicates."""
    return f"file-{batch_id}-output", f"file-{batch_id}-errors"


def live_counts(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """The record with request_counts read from the committed line results."""
    if record["status"] in ("in_progress", "finalizing", "cancelling"):
        ok, failed = store.line_counts(record["id"])
        record["request_counts"] = {**record["request_counts"], "completed": ok,
                                    "failed": failed}  # fmt: skip
    return record


class LineResultWriter:
    """Commits one batch's finished lines to the store off the event loop, all lines that
    finished since the last commit in one transaction."""

    def __init__(self, store: Store, batch_id: str) -> None:
        self.store, self.batch_id = store, batch_id
        self.rows: list[tuple[int, bool, bytes]] = []
        self.wake = asyncio.Event()
        self.closing = False
        self.task = asyncio.create_task(self._commit_loop())

    def add(self, index: int, ok: bool, body: bytes) -> None:
        if self.task.done():  # the writer failed (e.g. a full disk): stop running lines
            self.task.result()
            raise RuntimeError("the line result writer stopped")
        self.rows.append((index, ok, body))
        self.wake.set()

    async def _commit_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.rows:
                rows, self.rows = self.rows, []
                await asyncio.to_thread(self.store.add_line_results, self.batch_id, rows)
            if self.closing:
                return

    async def close(self) -> None:
        """Returns once every added row is committed (re-raises the writer's error)."""
        self.closing = True
        self.wake.set()
        await asyncio.shield(self.task)


class BatchRunner:
    def __init__(self, store: Store, blobs: BlobStore, execute: Execute, concurrency: int) -> None:
        self.store, self.blobs, self.execute = store, blobs, execute
        self.slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def resume(self) -> None:
        for record in self.store.with_status("batch", ACTIVE):
            logger.info("resuming batch %s (%s)", record["id"], record["status"])
            self.submit(record["id"])

    def submit(self, batch_id: str) -> None:
        if batch_id not in self.tasks:
            task = asyncio.create_task(self._run(batch_id))
            self.tasks[batch_id] = task
            task.add_done_callback(lambda t: self._forget(batch_id, t))

    def _forget(self, batch_id: str, task: asyncio.Task[None]) -> None:
        if self.tasks.get(batch_id) is task:
            del self.tasks[batch_id]

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        """cancelling now (in-flight lines are aborted), cancelled once the files are written.
        The caller has checked that the batch is not finished."""
        record = self.store.get("batch", batch_id)
        assert record is not None
        if record["status"] == "cancelling":
            return live_counts(self.store, record)
        record = self._save(record, "cancelling")
        task = self.tasks.get(batch_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.tasks.pop(batch_id, None)
        self.submit(batch_id)
        return live_counts(self.store, record)

    async def stop(self) -> None:
        """Stop running (shutdown): the store keeps each batch's state for the next start."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def _save(self, record: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
        record = {**record, **fields, "status": status, f"{status}_at": int(time.time())}
        self.store.put("batch", record)
        return record

    async def _run(self, batch_id: str) -> None:
        try:
            await self._advance(batch_id)
        except asyncio.CancelledError:
            raise
        except StoreFullError as e:  # try again on the next start, state unchanged
            logger.error("batch %s paused: %s", batch_id, e)
        except Exception as e:
            logger.exception("batch %s failed", batch_id)
            record = self.store.get("batch", batch_id)
            if record is not None and record["status"] not in FINISHED:
                error = {"code": "server_error", "message": f"{type(e).__name__}: {e}",
                         "param": None, "line": None}  # fmt: skip
                self._save(record, "failed", errors={"object": "list", "data": [error]})

    async def _advance(self, batch_id: str) -> None:
        record = self.store.get("batch", batch_id)
        if record is None or record["status"] in FINISHED:
            return
        lines: list[BatchLine] = []
        if record["status"] in ("validating", "in_progress"):
            if not self.blobs.exists(record["input_file_id"]):
                raise RuntimeError(f"the input file {record['input_file_id']} is gone")
            data = self.blobs.read_bytes(record["input_file_id"])
            lines, errors = parse_batch_input(data, record["endpoint"])
            if errors:
                self._save(record, "failed", errors={"object": "list", "data": errors})
                return
        if record["status"] == "validating":
            counts = {"total": len(lines), "completed": 0, "failed": 0}
            record = self._save(record, "in_progress", request_counts=counts)
        if record["status"] == "in_progress":
            await self._run_lines(record, lines)
            record = self.store.get("batch", batch_id) or record
        if record["status"] == "cancelling":
            await self._finalize(record, "cancelled", [])
            return
        done = len(self.store.line_results(batch_id))
        expired = done < len(lines) and time.time() > record["expires_at"]
        if record["status"] == "in_progress":
            record = self._save(record, "finalizing")
        await self._finalize(record, "expired" if expired else "completed", lines)

    async def _run_lines(self, record: dict[str, Any], lines: list[BatchLine]) -> None:
        batch_id = record["id"]
        done = {index for index, _, _ in self.store.line_results(batch_id)}
        todo = asyncio.Queue[BatchLine]()
        for line in lines:
            if line.index not in done:
                todo.put_nowait(line)

        def stopping() -> bool:
            current = self.store.get("batch", batch_id)
            return (current is None or current["status"] != "in_progress"
                    or time.time() > record["expires_at"])  # fmt: skip

        writer = LineResultWriter(self.store, batch_id)

        async def worker() -> None:
            while not todo.empty():
                line = todo.get_nowait()
                async with self.slots:
                    if stopping():
                        return
                    ok, out = await self._run_line(record, line)
                writer.add(line.index, ok, out)

        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await writer.close()  # finished lines are kept, even when the batch is cancelled

    async def _run_line(self, record: dict[str, Any], line: BatchLine) -> tuple[bool, bytes]:
        token = BACKGROUND.set(True)
        try:
            status, body = await self.execute(record["endpoint"], line.body)
        finally:
            BACKGROUND.reset(token)
        response = {"status_code": status, "request_id": uuid.uuid4().hex,
                    "body": msgspec.Raw(body)}  # fmt: skip
        out = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id,
               "response": response, "error": None}  # fmt: skip
        return status == 200, _encoder.encode(out)

    async def _finalize(self, record: dict[str, Any], final: str, lines: list[BatchLine]) -> None:
        """Write the output and error files from the committed results, then the final state."""
        results = self.store.line_results(record["id"])
        outputs = [body for _, ok, body in results if ok]
        errors = [body for _, ok, body in results if not ok]
        if final == "expired":  # every line that did not run, as OpenAI reports it
            done = {index for index, _, _ in results}
            for line in lines:
                if line.index not in done:
                    errors.append(_encoder.encode({
                        "id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id,
                        "response": None, "error": {"code": "batch_expired", "message": "This "
                        "request could not be executed before the completion window expired."},
                    }))  # fmt: skip
        out_id, err_id = output_file_ids(record["id"])
        fields: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
        for file_id, rows, key in ((out_id, outputs, "output_file_id"),
                                   (err_id, errors, "error_file_id")):  # fmt: skip
            if not rows:
                continue
            data = b"".join(row + b"\n" for row in rows)
            self.blobs.write_bytes(file_id, data)
            self.store.put("file", {
                "id": file_id, "object": "file", "bytes": len(data),
                "created_at": int(time.time()), "filename": f"{record['id']}_{key[:-8]}.jsonl",
                "purpose": "batch_output", "status": "processed", "expires_at": None,
                "status_details": None,
            })  # fmt: skip
            fields[key] = file_id
        total = record.get("request_counts", {}).get("total", len(lines))
        fields["request_counts"] = {"total": total, "completed": len(outputs),
                                    "failed": len(results) - len(outputs)}  # fmt: skip
        self._save(record, final, **fields)

