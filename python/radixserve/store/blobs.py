"""File bodies on disk, written atomically: temp name, fsync, rename, fsync the folder.

A reader sees the old body or the whole new one, never a torn file; temp files left by a
crash are removed when the store opens. A full disk raises StoreFullError and leaves nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from radixserve.store.base import FULL_ERRNOS, StoreFullError

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
CHUNK = 1 << 16


class TooLargeError(Exception):
    """The body went past the size limit; nothing was kept."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "files"
        self.tmp = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # half-written uploads of a crashed process
            stale.unlink(missing_ok=True)

    def path(self, blob_id: str) -> Path:
        if not _SAFE_ID.match(blob_id):
            raise ValueError(f"bad blob id {blob_id!r}")
        return self.dir / blob_id

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

    def _temp(self) -> tuple[Path, BinaryIO]:
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        return tmp, open(tmp, "xb")  # noqa: SIM115 - closed by the callers

    def _commit(self, tmp: Path, f: BinaryIO, blob_id: str) -> None:
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, self.path(blob_id))
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)

    def write_bytes(self, blob_id: str, data: bytes) -> None:
        self.write_chunks(blob_id, iter((data,)))

    def write_chunks(self, blob_id: str, chunks: Iterator[bytes]) -> int:
        tmp, f = self._temp()
        size = 0
        try:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            self._commit(tmp, f, blob_id)
        except BaseException as e:
            f.close()
            tmp.unlink(missing_ok=True)
            if _is_full(e):
                raise _full(e) from None
            raise
        return size

    def writer(self, limit: int) -> BlobWriter:
        """An incremental writer: write() chunks, then commit(id) or discard()."""
        tmp, f = self._temp()
        return BlobWriter(self, tmp, f, limit)

    def read_chunks(self, blob_id: str) -> Iterator[bytes]:
        with open(self.path(blob_id), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def read_bytes(self, blob_id: str) -> bytes:
        return self.path(blob_id).read_bytes()

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)


class BlobWriter:
    def __init__(self, blobs: BlobStore, tmp: Path, f: BinaryIO, limit: int) -> None:
        self.blobs, self.tmp, self.f, self.limit = blobs, tmp, f, limit
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.discard()
            raise TooLargeError(f"The file is larger than the limit of {self.limit} bytes.")
        try:
            self.f.write(chunk)
        except OSError as e:
            self.discard()
            if _is_full(e):
                raise _full(e) from None
            raise

    def commit(self, blob_id: str) -> int:
        try:
            self.blobs._commit(self.tmp, self.f, blob_id)
        except OSError as e:
            self.discard()
            if _is_full(e):
                raise _full(e) from None
            raise
        return self.size

    def discard(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def _is_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in FULL_ERRNOS


def _full(e: BaseException) -> StoreFullError:
    return StoreFullError(f"The disk is full: {e}")
