"""The durable store without a server: records, paging, line results, atomic bodies, full disk."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from radixserve.store import open_store
from radixserve.store.blobs import TooLargeError


def test_records_page_and_survive_reopen(tmp_path: Path) -> None:
    store, _ = open_store(str(tmp_path))
    for i in range(5):
        store.put("file", {"id": f"file-{i}", "created_at": 100 + i, "purpose": "batch" if i % 2
                           else "user_data", "status": "processed"})  # fmt: skip
    page, more = store.page("file", limit=2)
    assert [r["id"] for r in page] == ["file-4", "file-3"] and more
    page, more = store.page("file", limit=2, after="file-3")
    assert [r["id"] for r in page] == ["file-2", "file-1"] and more
    page, more = store.page("file", limit=10, order="asc", where={"purpose": "batch"})
    assert [r["id"] for r in page] == ["file-1", "file-3"] and not more
    assert store.delete("file", "file-0") and not store.delete("file", "file-0")
    assert store.add_line_results("batch_a", [(3, True, b"{}")]) == 1
    # A line is recorded once: its second result is ignored, a new line in the group is not.
    assert store.add_line_results("batch_a", [(3, False, b"{}"), (1, False, b"[]")]) == 1
    assert store.line_results("batch_a") == [(1, False, b"[]"), (3, True, b"{}")]
    store.close()
    again, _ = open_store(str(tmp_path))
    assert again.get("file", "file-4") is not None and again.get("file", "file-0") is None
    assert again.line_counts("batch_a") == (1, 1)
    assert [i for i, _, _ in again.line_results("batch_a")] == [1, 3]
    assert [r["id"] for r in again.with_status("file", ("processed",))][0] == "file-1"


def test_bodies_are_atomic_and_limited(tmp_path: Path) -> None:
    _, blobs = open_store(str(tmp_path))
    blobs.write_bytes("file-x", b"old")
    writer = blobs.writer(limit=10)
    writer.write(b"new-")
    assert blobs.read_bytes("file-x") == b"old"  # not visible until committed
    with pytest.raises(TooLargeError):
        writer.write(b"much too long")
    assert blobs.read_bytes("file-x") == b"old" and not list(blobs.tmp.iterdir())
    (blobs.tmp / "crashed.part").write_bytes(b"half")
    _, reopened = open_store(str(tmp_path))  # a crash's temp files are cleared on open
    assert not list(reopened.tmp.iterdir())
    with pytest.raises(ValueError):
        blobs.path("../escape")


def test_full_disk_leaves_the_store_unchanged(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes writes past 1 MiB fail with EFBIG, as a full disk does (ENOSPC).
    script = textwrap.dedent(f"""
        import resource
        from radixserve.store import StoreFullError, open_store
        store, blobs = open_store({str(tmp_path)!r})
        blobs.write_bytes("file-small", b"ok")
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        w = blobs.writer(limit=1 << 30)
        try:
            for _ in range(64):
                w.write(b"x" * 65536)
            w.commit("file-big")
        except StoreFullError:
            print("full")
        print(blobs.exists("file-big"), blobs.read_bytes("file-small"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={"PYTHONPATH": str(Path(__file__).parents[2] / "python")})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["full", "False", "b'ok'"]
    _, blobs = open_store(str(tmp_path))
    assert not list(blobs.tmp.iterdir()) and not blobs.exists("file-big")
