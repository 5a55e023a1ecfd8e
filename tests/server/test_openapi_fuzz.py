"""/openapi.json describes every route's request body; schemathesis fuzzing finds no 5xx.

A dedicated server with a 48-token context keeps every fuzzed generation short. The default
run is bounded (a few examples per operation); RADIXSERVE_FUZZ_EXAMPLES or the `slow` test
runs more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from .conftest import Server
from .spawn import spawn_server

EXAMPLES = int(os.environ.get("RADIXSERVE_FUZZ_EXAMPLES", "4"))
BODY_ROUTES = ("/v1/chat/completions", "/v1/completions", "/generate", "/tokenize",
               "/detokenize", "/abort_request", "/update_weights_from_disk")  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--context-length", "48", "--max-total-tokens", "2048"]
    with spawn_server(tmp_path_factory.mktemp("fuzz"), args) as s:
        yield s


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


def test_schema_has_request_bodies(fuzz_server: Server) -> None:
    doc = httpx.get(fuzz_server.url + "/openapi.json").json()
    assert httpx.get(fuzz_server.url + "/docs").status_code == 200
    for path in BODY_ROUTES:
        op = next(iter(doc["paths"][path].values()))
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema["type"] == "object" and schema["properties"], path
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert "messages" in chat["content"]["application/json"]["schema"]["required"]


schema = schemathesis.pytest.from_fixture("api_schema")


def _no_server_error(case: Any) -> None:
    response = case.call(timeout=120)
    assert response.status_code < 500, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}\n"
        f"body: {case.body!r}"
    )


@schema.exclude(path="/update_weights_from_disk").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)  # fmt: skip
def test_fuzz_no_server_errors(case: Any) -> None:
    _no_server_error(case)


@pytest.mark.slow
@schema.exclude(path="/update_weights_from_disk").parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_server_errors_long(case: Any) -> None:
    _no_server_error(case)
