"""/v1/rerank and /classify through real servers: a tiny random BERT cross-encoder and a tiny
random LlamaForSequenceClassification, against transformers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from .models import make_tiny_cross_encoder, make_tiny_llama_classifier
from .server import running_server

QUERY = "what is a radix tree"
DOCS = ["a tree keyed by token prefixes", "bananas are yellow", "prefix sharing in caches", "x"]


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cross-encoder")
    make_tiny_cross_encoder(str(path))
    return str(path)


@pytest.fixture(scope="module")
def cross_url(cross_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(cross_dir, tmp_path_factory.mktemp("ce") / "log") as u:
        yield u


def test_rerank_matches_transformers(cross_url: str, cross_dir: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cross_dir)
    hf = AutoModelForSequenceClassification.from_pretrained(cross_dir).eval()
    with torch.inference_mode():
        enc = tok([QUERY] * len(DOCS), DOCS, padding=True, return_tensors="pt")
        ref = torch.sigmoid(hf(**enc).logits[:, 0])
    r = httpx.post(cross_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    results = r.json()
    assert [x["index"] for x in results] == ref.argsort(descending=True).tolist()
    for x in results:
        assert x["document"] == DOCS[x["index"]]
        assert abs(x["score"] - float(ref[x["index"]])) < 1e-4
    top = httpx.post(cross_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS,
                                                     "top_n": 2, "return_documents": False})  # fmt: skip
    assert len(top.json()) == 2 and "document" not in top.json()[0]
    assert top.json()[0]["index"] == results[0]["index"]


def test_classify_matches_transformers(cross_url: str, cross_dir: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cross_dir)
    hf = AutoModelForSequenceClassification.from_pretrained(cross_dir).eval()
    r = httpx.post(cross_url + "/classify", json={"text": DOCS[:2]})
    assert r.status_code == 200, r.text
    with torch.inference_mode():
        for i, out in enumerate(r.json()):
            ref = hf(**tok(DOCS[i], return_tensors="pt")).logits[0]
            torch.testing.assert_close(torch.tensor(out["embedding"]), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("path,body", [
    ("/v1/rerank", {"query": "", "documents": ["a"]}),
    ("/v1/rerank", {"query": "a", "documents": []}),
    ("/v1/rerank", {"query": "a", "documents": ["a", ""]}),
    ("/v1/rerank", {"query": "a", "documents": "abc"}),
    ("/v1/rerank", {"query": "a", "documents": ["b"], "top_n": 0}),
    ("/v1/embeddings", {"input": "a"}),
    ("/classify", {"input_ids": [1, 99999]}),
])  # fmt: skip
def test_cross_encoder_bad_input(cross_url: str, path: str, body: dict[str, object]) -> None:
    r = httpx.post(cross_url + path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == 400
    assert httpx.get(cross_url + "/health").status_code == 200


def test_llama_sequence_classification(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    make_tiny_llama_classifier(str(tmp_path))
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    seqs = [[1, 500, 600, 700], [1, 42, 43]]
    with running_server(str(tmp_path), tmp_path / "log") as url:
        r = httpx.post(url + "/classify", json={"input_ids": seqs})
        assert r.status_code == 200, r.text
        rr = httpx.post(url + "/v1/rerank", json={"query": "a", "documents": ["b", "c"]})
        assert rr.status_code == 200 and len(rr.json()) == 2
        # SGLang's /v1/classify (vLLM's format): `input`, softmax probs and id2label names.
        v1 = httpx.post(url + "/v1/classify", json={"model": "m", "input": seqs})
        assert v1.status_code == 200, v1.text
        bad = httpx.post(url + "/v1/classify", json={"model": "m"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    body = v1.json()
    assert body["object"] == "list" and body["id"].startswith("classify-")
    assert body["usage"]["prompt_tokens"] == sum(map(len, seqs)) == body["usage"]["total_tokens"]
    with torch.inference_mode():
        for i, (s, out, item) in enumerate(zip(seqs, r.json(), body["data"], strict=True)):
            ref = hf(input_ids=torch.tensor([s])).logits[0]
            torch.testing.assert_close(torch.tensor(out["embedding"]), ref, atol=1e-4, rtol=1e-4)
            probs = torch.softmax(ref, dim=-1)
            assert item["index"] == i and item["num_classes"] == 3
            torch.testing.assert_close(torch.tensor(item["probs"]), probs, atol=1e-4, rtol=1e-4)
            assert item["label"] == hf.config.id2label[int(probs.argmax())]
