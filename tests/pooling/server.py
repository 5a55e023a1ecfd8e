"""Start a real radixserve server on a model folder for one test module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server.spawn import spawn_server


@contextmanager
def running_server(model: str, log: Path, *extra: str) -> Iterator[str]:
    """The server's URL; its log and data folder go beside `log`."""
    args = ["--model-path", model, "--max-running-requests", "32", "--num-threads", "1",
            "--max-total-tokens", "16384", *extra]  # fmt: skip
    with spawn_server(log.parent, args) as srv:
        yield srv.url
