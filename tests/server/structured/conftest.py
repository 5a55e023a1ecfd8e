"""One real server for the structured-output, tool-calling and reasoning tests: the default
model with the hermes tool-call parser and the qwen3 reasoning parser (reasoning only where
the output opens a <think> section, so plain requests are unaffected)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.server.spawn import Server, spawn_server


@pytest.fixture(scope="session")
def grammar_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--max-total-tokens", "8192", "--max-running-requests", "32",
            "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3"]  # fmt: skip
    with spawn_server(tmp_path_factory.mktemp("grammar_server"), args) as srv:
        yield srv
