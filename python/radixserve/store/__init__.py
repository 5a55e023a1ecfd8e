"""State that outlives the process: file bodies on disk, records in a database.

`open_store(data_dir)` gives the default pair: `SQLiteStore` (records) and `BlobStore`
(file bodies), both under one data folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from radixserve.store.base import Store, StoreFullError
from radixserve.store.blobs import BlobStore
from radixserve.store.sqlite_store import SQLiteStore

__all__ = ["BlobStore", "SQLiteStore", "Store", "StoreFullError", "default_data_dir",
           "open_store"]  # fmt: skip


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")  # fmt: skip
    return Path(base) / "radixserve"


def open_store(data_dir: Optional[str]) -> tuple[Store, BlobStore]:
    root = Path(data_dir) if data_dir else default_data_dir()
    root.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(root / "store.db"), BlobStore(root)
