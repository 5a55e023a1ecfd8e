"""/v1/score on a generative server (tiny random Llama) against a transformers softmax over the
label ids, with the query shared through the radix cache; and last-token embeddings of the
same model served with --is-embedding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from .models import make_tiny_llama
from .server import running_server

LABELS = [300, 301, 302]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(str(path))
    return str(path)


@pytest.fixture(scope="module")
def url(llama_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(llama_dir, tmp_path_factory.mktemp("gen") / "log") as u:
        yield u


def hf_label_probs(llama_dir: str, seqs: list[list[int]], softmax: bool) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    rows = []
    with torch.inference_mode():
        for s in seqs:
            logits = hf(input_ids=torch.tensor([s])).logits[0, -1]
            if softmax:
                rows.append(torch.softmax(logits[LABELS], -1))
            else:
                rows.append(torch.softmax(logits, -1)[LABELS])
    return torch.stack(rows)


@pytest.mark.parametrize("apply_softmax", [True, False])
def test_score_matches_transformers(url: str, llama_dir: str, apply_softmax: bool) -> None:
    query = [1] + list(range(1000, 1040))
    items = [[2000 + i, 2100 + i, 2200 + i] for i in range(6)]
    r = httpx.post(url + "/v1/score", json={"query": query, "items": items,
                                            "label_token_ids": LABELS,
                                            "apply_softmax": apply_softmax})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    ref = hf_label_probs(llama_dir, [query + it for it in items], apply_softmax)
    torch.testing.assert_close(torch.tensor(body["scores"]), ref, atol=1e-4, rtol=1e-3)
    # Items after the first reuse the cached query (whole: at least len(query) tokens each).
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] >= (len(items) - 1) * len(query)


def test_score_text_and_item_first(url: str, llama_dir: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)
    q, items = "Is the sky blue? Answer:", [" yes", " no"]
    r = httpx.post(url + "/v1/score", json={"query": q, "items": items, "label_token_ids": LABELS,
                                            "apply_softmax": True})  # fmt: skip
    seqs = [tok.encode(q) + tok.encode(it, add_special_tokens=False) for it in items]
    torch.testing.assert_close(torch.tensor(r.json()["scores"]),
                               hf_label_probs(llama_dir, seqs, True), atol=1e-4, rtol=1e-3)  # fmt: skip
    first = httpx.post(url + "/v1/score", json={"query": [5, 6], "items": [[7, 8]],
                                                "label_token_ids": LABELS, "item_first": True,
                                                "apply_softmax": True})  # fmt: skip
    torch.testing.assert_close(torch.tensor(first.json()["scores"]),
                               hf_label_probs(llama_dir, [[7, 8, 5, 6]], True), atol=1e-4, rtol=1e-3)  # fmt: skip


@pytest.mark.parametrize("path,body", [
    ("/v1/score", {"query": "a", "items": ["b"]}),
    ("/v1/score", {"query": "a", "items": ["b"], "label_token_ids": []}),
    ("/v1/score", {"query": "a", "items": ["b"], "label_token_ids": [10**9]}),
    ("/v1/score", {"query": "a", "items": [], "label_token_ids": [1]}),
    ("/v1/score", {"query": "", "items": ["b"], "label_token_ids": [1]}),
    ("/v1/score", {"query": 3, "items": ["b"], "label_token_ids": [1]}),
    ("/v1/score", {"query": "a", "items": [[1, -5]], "label_token_ids": [1]}),
    ("/v1/embeddings", {"input": "hello"}),
    ("/encode", {"text": "hello"}),
    ("/v1/rerank", {"query": "a", "documents": ["b"]}),
    ("/classify", {"text": "a"}),
])  # fmt: skip
def test_generative_server_bad_input(url: str, path: str, body: dict[str, object]) -> None:
    r = httpx.post(url + path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == 400
    assert httpx.get(url + "/health").status_code == 200


def test_is_embedding_last_token(llama_dir: str, tmp_path: Path) -> None:
    from transformers import AutoModel

    seqs = [[1, 50, 60, 70, 80], [1, 9]]
    with running_server(llama_dir, tmp_path / "log", "--is-embedding") as url:
        r = httpx.post(url + "/v1/embeddings", json={"input": seqs})
        assert r.status_code == 200, r.text
        gen = httpx.post(url + "/generate", json={"text": "hi"})
        assert gen.status_code == 400
    hf = AutoModel.from_pretrained(llama_dir).eval()
    with torch.inference_mode():
        for s, d in zip(seqs, r.json()["data"], strict=True):
            h = hf(input_ids=torch.tensor([s])).last_hidden_state[0, -1]
            ref = torch.nn.functional.normalize(h, dim=0)
            torch.testing.assert_close(torch.tensor(d["embedding"]), ref, atol=1e-4, rtol=1e-3)
