"""Batch line results are committed off the event loop, in groups, and none is dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from radixserve.entrypoints.openai.batch_runner import LineResultWriter
from radixserve.store import StoreFullError, open_store


def test_lines_finished_together_commit_in_one_transaction(tmp_path: Path) -> None:
    store, _ = open_store(str(tmp_path))
    groups: list[int] = []
    add = store.add_line_results

    def counting_add(batch_id: str, rows: list[tuple[int, bool, bytes]]) -> int:
        groups.append(len(rows))
        return add(batch_id, rows)

    store.add_line_results = counting_add  # type: ignore[method-assign]

    async def run() -> None:
        writer = LineResultWriter(store, "batch_w")
        for i in range(50):  # one engine step finishing 50 lines: no await in between
            writer.add(i, i % 7 != 0, b'{"i": %d}' % i)
        await asyncio.sleep(0.05)  # meanwhile the loop is free
        writer.add(50, True, b"{}")
        await writer.close()

    asyncio.run(run())
    assert groups == [50, 1]
    results = store.line_results("batch_w")
    assert [i for i, _, _ in results] == list(range(51))
    assert store.line_counts("batch_w") == (51 - 8, 8)


def test_a_failed_commit_stops_the_lines(tmp_path: Path) -> None:
    store, _ = open_store(str(tmp_path))

    def full(batch_id: str, rows: list[tuple[int, bool, bytes]]) -> int:
        raise StoreFullError("The disk is full")

    store.add_line_results = full  # type: ignore[method-assign]

    async def run() -> None:
        writer = LineResultWriter(store, "batch_f")
        writer.add(0, True, b"{}")
        await asyncio.sleep(0.05)
        with pytest.raises(StoreFullError):
            writer.add(1, True, b"{}")  # the next finished line learns of it
        with pytest.raises(StoreFullError):
            await writer.close()

    asyncio.run(run())
