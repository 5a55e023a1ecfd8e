"""/v1/embeddings and /encode through a real server on the packaged all-MiniLM-L6-v2, checked
against sentence-transformers; every bad input is a 400 and the server stays healthy."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from .models import minilm_path
from .server import running_server

SENTENCES = [
    "A man is eating food.",
    "Radix trees let many requests share one prompt prefix.",
    "The weather is lovely today, isn't it?",
    "Ceci n'est pas une pipe.",
    "x",
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("minilm") / "server.log"
    with running_server(minilm_path(), log) as u:
        yield u


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path(), device="cpu")
    return torch.tensor(st.encode(SENTENCES, convert_to_numpy=True))


def test_openai_sdk_matches_sentence_transformers(url: str, reference: torch.Tensor) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="none")
    resp = client.embeddings.create(model="minilm", input=SENTENCES, encoding_format="float")
    assert [d.index for d in resp.data] == list(range(len(SENTENCES)))
    got = torch.tensor([d.embedding for d in resp.data])
    assert got.shape == (len(SENTENCES), 384)
    cos = torch.nn.functional.cosine_similarity(got, reference, dim=-1)
    assert bool((cos >= 0.9999).all()), cos
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > len(SENTENCES)


def test_single_string_token_ids_and_base64(url: str, reference: torch.Tensor) -> None:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(minilm_path())(SENTENCES[1])["input_ids"]
    one = httpx.post(url + "/v1/embeddings", json={"input": SENTENCES[1]}).json()
    by_ids = httpx.post(url + "/v1/embeddings", json={"input": ids}).json()
    lists = httpx.post(url + "/v1/embeddings", json={"input": [ids, ids[:3]]}).json()
    b64 = httpx.post(url + "/v1/embeddings",
                     json={"input": SENTENCES[1], "encoding_format": "base64"}).json()  # fmt: skip
    raw = base64.b64decode(b64["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    vec = one["data"][0]["embedding"]
    assert one["usage"]["prompt_tokens"] == len(ids)
    torch.testing.assert_close(torch.tensor(by_ids["data"][0]["embedding"]), torch.tensor(vec))
    torch.testing.assert_close(torch.tensor(lists["data"][0]["embedding"]), torch.tensor(vec))
    assert len(lists["data"]) == 2 and lists["data"][1]["index"] == 1
    torch.testing.assert_close(torch.tensor(decoded), torch.tensor(vec))
    cos = torch.nn.functional.cosine_similarity(torch.tensor(vec), reference[1], dim=0)
    assert cos >= 0.9999


def test_dimensions_truncate_and_renormalise(url: str) -> None:
    full = httpx.post(url + "/v1/embeddings", json={"input": "hello"}).json()["data"][0]
    small = httpx.post(url + "/v1/embeddings", json={"input": "hello", "dimensions": 16}).json()
    vec = torch.tensor(small["data"][0]["embedding"])
    assert vec.shape == (16,)
    torch.testing.assert_close(vec, torch.nn.functional.normalize(torch.tensor(full["embedding"][:16]), dim=0))


def test_encode_native(url: str, reference: torch.Tensor) -> None:
    one = httpx.post(url + "/encode", json={"text": SENTENCES[0]}).json()
    batch = httpx.post(url + "/encode", json={"text": SENTENCES[:2]}).json()
    assert isinstance(batch, list) and len(batch) == 2
    assert one["meta_info"]["prompt_tokens"] > 0
    for got, ref in ((one["embedding"], reference[0]), (batch[1]["embedding"], reference[1])):
        assert torch.nn.functional.cosine_similarity(torch.tensor(got), ref, dim=0) >= 0.9999
    ids = httpx.post(url + "/encode", json={"input_ids": [[101, 7592, 102], [101, 102]]}).json()
    assert len(ids) == 2 and len(ids[0]["embedding"]) == 384


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/embeddings", {"input": []}),
        ("/v1/embeddings", {"input": ""}),
        ("/v1/embeddings", {"input": ["ok", ""]}),
        ("/v1/embeddings", {"input": [[]]}),
        ("/v1/embeddings", {"input": [101, 30522]}),
        ("/v1/embeddings", {"input": [-1]}),
        ("/v1/embeddings", {"input": "word " * 600}),
        ("/v1/embeddings", {"input": 5}),
        ("/v1/embeddings", {"input": ["a", 1]}),
        ("/v1/embeddings", {"input": {"a": 1}}),
        ("/v1/embeddings", {}),
        ("/v1/embeddings", {"input": "a", "dimensions": 385}),
        ("/v1/embeddings", {"input": "a", "dimensions": 0}),
        ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}),
        ("/v1/embeddings", {"input": "a", "truncate_prompt_tokens": 0}),
        ("/encode", {"text": "a", "input_ids": [1]}),
        ("/encode", {"text": 3}),
        ("/encode", {"input_ids": "abc"}),
        ("/classify", {"text": "a"}),
        ("/v1/rerank", {"query": "a", "documents": ["b"]}),
        ("/v1/score", {"query": "a", "items": ["b"], "label_token_ids": [1]}),
        ("/generate", {"text": "hello"}),
        ("/v1/completions", {"model": "m", "prompt": "hello"}),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_bad_input_is_400(url: str, path: str, body: dict[str, object]) -> None:
    r = httpx.post(url + path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error" and err["message"]
    assert httpx.get(url + "/health").status_code == 200


def test_embedding_server_messages(url: str) -> None:
    for path, body in (
        ("/generate", {"text": "hello"}),
        ("/v1/completions", {"model": "m", "prompt": "hello"}),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ):
        message = httpx.post(url + path, json=body).json()["error"]["message"]
        assert "serves an embedding/classification model" in message, (path, message)
    info = httpx.get(url + "/get_model_info").json()
    assert info["is_generation"] is False


def test_truncate_prompt_tokens(url: str) -> None:
    long = "word " * 600
    r = httpx.post(url + "/v1/embeddings", json={"input": long, "truncate_prompt_tokens": 20})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == 20


def test_metrics_count_pooling(url: str, tmp_path: Path) -> None:
    httpx.post(url + "/v1/embeddings", json={"input": ["one", "two"]})
    text = httpx.get(url + "/metrics").text
    assert 'radixserve:num_pooling_requests_total{' in text and 'route="/v1/embeddings"' in text
    assert "radixserve:pooling_request_latency_seconds_bucket" in text
    assert "radixserve:pooling_prompt_tokens_total" in text
    # The server-side time of whole requests, by route (bench_embeddings reads it).
    count = next(line for line in text.splitlines() if line.startswith(
        'radixserve:http_request_duration_seconds_count{route="/v1/embeddings"}'))
    assert float(count.rsplit(" ", 1)[1]) >= 1


def test_dropped_single_input_requests_are_aborted(url: str) -> None:
    """32 clients send one long input each and leave after 20 ms: the requests still waiting
    are aborted (fewer than 32 finish), nothing stays queued, every KV slot comes back, and the
    server keeps answering."""
    import asyncio
    import time

    text = " ".join(["word"] * 500)  # 502 tokens: 32 of them need several steps

    def load() -> dict[str, float]:
        return dict(httpx.get(url + "/get_load", timeout=30).json())

    before = load()

    async def drop_all() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.02)) as client:
            posts = (client.post(url + "/v1/embeddings", json={"input": text}) for _ in range(32))
            results = await asyncio.gather(*posts, return_exceptions=True)
        assert all(isinstance(r, httpx.TimeoutException) for r in results)

    asyncio.run(drop_all())
    deadline = time.monotonic() + 60
    while True:
        now = load()
        idle = now["num_running_reqs"] == 0 and now["num_waiting_reqs"] == 0
        if (idle and now["kv_available"] == now["kv_size"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert now["num_running_reqs"] == 0 and now["num_waiting_reqs"] == 0
    assert now["kv_available"] == now["kv_size"]
    assert now["num_finished_reqs"] - before["num_finished_reqs"] < 32
    r = httpx.post(url + "/v1/embeddings", json={"input": "still serving"}, timeout=60)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
