"""API key file, per-key rate limits, protected metrics, --disable-metrics (scripted engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from radixserve.args import ServerArgs
from radixserve.entrypoints.access import match_key
from radixserve.entrypoints.app import create_app

from .fake_engine import FakeTokenizerManager

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def client(tmp_path: Path, keys: list[str] | None = None, **kw: Any) -> TestClient[Any]:
    if keys is not None:
        path = tmp_path / "keys.txt"
        path.write_text("# comment\n" + "\n".join(keys) + "\n\n")
        kw["api_key_file"] = str(path)
    return TestClient(app=create_app(FakeTokenizerManager(), ServerArgs(**kw)))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_any_key_of_the_file_is_accepted(tmp_path: Path) -> None:
    with client(tmp_path, ["alpha", "beta"], api_key="gamma") as c:
        for key in ("alpha", "beta", "gamma"):
            assert c.post("/v1/chat/completions", json=CHAT, headers=bearer(key)).status_code == 200
        for headers in ({}, bearer("alph"), bearer("alpha2"), {"Authorization": "alpha"}):
            r = c.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == 401
        assert c.get("/health").status_code == 200  # probes stay open
        assert c.get("/metrics").status_code == 200


def test_protect_metrics(tmp_path: Path) -> None:
    with client(tmp_path, ["alpha"], protect_metrics=True) as c:
        for path in ("/health", "/metrics"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers=bearer("alpha")).status_code == 200


def test_rate_limit_per_key(tmp_path: Path) -> None:
    with client(tmp_path, ["alpha", "beta"], rate_limit_per_minute=3) as c:
        for _ in range(3):
            assert c.get("/v1/models", headers=bearer("alpha")).status_code == 200
        r = c.get("/v1/models", headers=bearer("alpha"))
        assert r.status_code == 429
        assert r.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert c.get("/v1/models", headers=bearer("beta")).status_code == 200  # per key
        assert c.get("/health").status_code == 200  # not counted


def test_rate_limit_without_keys_is_per_client(tmp_path: Path) -> None:
    with client(tmp_path, rate_limit_per_minute=1) as c:
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/models").status_code == 429


def test_disable_metrics(tmp_path: Path) -> None:
    with client(tmp_path, disable_metrics=True) as c:
        assert c.get("/metrics").status_code == 404
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_match_key_compares_every_key() -> None:
    keys = [b"a1", b"b2", b"c3"]
    assert match_key(b"b2", keys) == b"b2" and match_key(b"b", keys) is None


@pytest.mark.parametrize("kw, text", [
    ({"trust_remote_code": True}, "--trust-remote-code is not supported"),
    ({"revision": "main"}, "--revision is not supported"),
    ({"request_timeout": 0}, "--request-timeout"),
    ({"api_key_file": "/nonexistent"}, "--api-key-file"),
])  # fmt: skip
def test_refused_flags(kw: dict[str, Any], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        ServerArgs(**kw)


def test_every_flag_has_help() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    missing = [a.dest for a in parser._actions if a.dest != "help" and not a.help]
    assert not missing, f"flags without help: {missing}"
