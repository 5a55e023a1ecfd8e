"""The BERT encoder (model level, native and torch kernels) against transformers, on a tiny
random BERT, a tiny cross-encoder and a PyTorch .bin checkpoint; the int16 encoder linears on
all-MiniLM-L6-v2 against sentence-transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import Linear
from radixserve.layers.pooler import pool
from radixserve.models.loader import load_model, load_model_config

from .models import make_tiny_bert, make_tiny_cross_encoder, minilm_path

SENTENCES = ["hello world", "the quick brown fox jumps over the lazy dog", "a"]


def packed_batch(seqs: list[list[int]], types: list[list[int]] | None = None) -> ForwardBatch:
    lens = [len(s) for s in seqs]
    starts = [sum(lens[:i]) for i in range(len(lens))]
    z = torch.zeros(len(seqs), dtype=torch.int64)
    return ForwardBatch(
        input_ids=torch.tensor([t for s in seqs for t in s]),
        positions=torch.tensor([p for n in lens for p in range(n)]),
        out_cache_loc=torch.zeros(sum(lens), dtype=torch.int64), req_pool_indices=z,
        seq_lens=torch.tensor(lens), extend_prefix_lens=z, extend_seq_lens=torch.tensor(lens),
        extend_start_loc=torch.tensor(starts), is_decode=False, seq_lens_list=lens,
        extend_seq_lens_list=lens, extend_prefix_lens_list=[0] * len(lens),
        token_type_ids=None if types is None else torch.tensor([t for s in types for t in s]),
    )  # fmt: skip


def ours(path: str, backend: str, linear_format: str = "float32") -> torch.nn.Module:
    """The model with its encoder linears in `linear_format` (the fp32 checks are exact ones;
    int16 has its own bound below)."""
    set_kernel_backend(backend)
    cfg = load_model_config(path)
    cfg.encoder_linear_format = linear_format
    model = load_model(cfg)
    for m in model.modules():
        if isinstance(m, Linear):
            m.post_load()
    return model


@pytest.fixture(params=["native", "torch"])
def backend(request: pytest.FixtureRequest) -> str:
    yield request.param
    set_kernel_backend("native")


@pytest.mark.parametrize("safetensors", [True, False])
def test_tiny_bert_mean_pooling(tmp_path: Path, backend: str, safetensors: bool) -> None:
    from transformers import AutoModel, AutoTokenizer

    make_tiny_bert(str(tmp_path), safetensors=safetensors)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    seqs = [tok(s)["input_ids"] for s in SENTENCES]
    with torch.inference_mode():
        got = ours(str(tmp_path), backend)(packed_batch(seqs))
        hf = AutoModel.from_pretrained(tmp_path).eval()
        for i, s in enumerate(seqs):
            h = hf(input_ids=torch.tensor([s])).last_hidden_state[0]
            ref = torch.nn.functional.normalize(h.mean(0), dim=-1)
            assert torch.nn.functional.cosine_similarity(got[i], ref, dim=0) > 0.99999


def test_tiny_cross_encoder_logits(tmp_path: Path, backend: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    make_tiny_cross_encoder(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(tmp_path)
    pairs = [tok("what is a radix tree", d) for d in SENTENCES]
    with torch.inference_mode():
        got = ours(str(tmp_path), backend)(
            packed_batch([p["input_ids"] for p in pairs], [p["token_type_ids"] for p in pairs])
        )
        hf = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        for i, p in enumerate(pairs):
            ref = hf(input_ids=torch.tensor([p["input_ids"]]),
                     token_type_ids=torch.tensor([p["token_type_ids"]])).logits[0]  # fmt: skip
            torch.testing.assert_close(got[i], ref, atol=1e-4, rtol=1e-4)


def test_pool_methods() -> None:
    h = torch.arange(12, dtype=torch.float32).view(6, 2)
    torch.testing.assert_close(pool(h, [0, 2], [2, 4], "cls"), h[[0, 2]])
    torch.testing.assert_close(pool(h, [0, 2], [2, 4], "last"), h[[1, 5]])
    torch.testing.assert_close(pool(h, [0, 2], [2, 4], "mean"), torch.stack([h[:2].mean(0), h[2:].mean(0)]))
    with pytest.raises(ValueError, match="pooling method"):
        pool(h, [0], [6], "max")


@pytest.mark.parametrize("lens", [[9], [4, 4, 4], [3, 5, 1], [1], [7, 7], [2, 9, 9]])
def test_mean_pooling_equal_and_mixed_lengths(lens: list[int]) -> None:
    """Equal lengths take one reshape-and-mean, mixed ones the segment sum: either way each
    sequence gets the mean of its own rows."""
    torch.manual_seed(0)
    h = torch.randn(sum(lens), 16)
    starts = [sum(lens[:i]) for i in range(len(lens))]
    want = torch.stack([h[s : s + n].mean(0) for s, n in zip(starts, lens, strict=True)])
    torch.testing.assert_close(pool(h, starts, lens, "mean"), want)


# Short, long (128+ tokens), code, numbers, other scripts: the fidelity bound of #8 holds for each.
MINILM_SENTENCES = [
    "A man is eating food.",
    "Radix trees let many requests share one prompt prefix.",
    "The weather is lovely today, isn't it?",
    "Ceci n'est pas une pipe.",
    "x",
    "The cat sat on the mat.",
    "def f(x):\n    return [i * i for i in range(x) if i % 2]  # squares of odd numbers",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "In 1905 Einstein published four papers that changed physics: the photoelectric effect, "
    "Brownian motion, special relativity and mass-energy equivalence. " * 3,
    "Hello!!! ??? ... ---",
    " ".join(str(i) for i in range(1, 21)),
    "Die Katze schläft auf dem Sofa, während der Hund im Garten spielt.",
    "東京は日本の首都です。",
    "Large language model serving engines batch requests to share the cost of reading weights "
    "from memory " * 10,
]


def test_minilm_int16_linears_match_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    st = SentenceTransformer(minilm_path(), device="cpu")
    ref = torch.tensor(st.encode(MINILM_SENTENCES, convert_to_numpy=True))
    tok = AutoTokenizer.from_pretrained(minilm_path())
    seqs = [tok(s, truncation=True, max_length=st.max_seq_length)["input_ids"]
            for s in MINILM_SENTENCES]  # fmt: skip
    assert max(len(s) for s in seqs) > 128
    with torch.inference_mode():
        model = ours(minilm_path(), "native", "auto")  # auto: int16 for this fp32 model
        linears = [m for m in model.encoder.layers.modules() if isinstance(m, Linear)]
        assert linears and all(m.int16_packed is not None for m in linears)
        got = model(packed_batch(seqs))
        # Each row is rounded on its own: one sentence alone gives the same vector.
        alone = model(packed_batch(seqs[4:5]))
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
    assert bool((cos >= 0.9999).all()), cos
    torch.testing.assert_close(alone[0], got[4], rtol=0, atol=1e-6)


def test_encoder_linear_format_choice(tmp_path: Path) -> None:
    from radixserve.args import ServerArgs

    make_tiny_bert(str(tmp_path))
    tok_ids = [[101, 7592, 2088, 102], [101, 1037, 102]]
    out = {}
    with torch.inference_mode():
        for backend, fmt in (("native", "float32"), ("native", "int16"), ("torch", "int16")):
            model = ours(str(tmp_path), backend, fmt)
            linears = [m for m in model.encoder.layers.modules() if isinstance(m, Linear)]
            int16 = backend == "native" and fmt == "int16"  # the torch backend keeps fp32
            assert all((m.int16_packed is not None) == int16 for m in linears)
            out[backend, fmt] = model(packed_batch(tok_ids))
    set_kernel_backend("native")
    cos = torch.nn.functional.cosine_similarity(out["native", "int16"], out["torch", "int16"])
    assert bool((cos > 0.9999).all()), cos
    torch.testing.assert_close(out["native", "float32"], out["torch", "int16"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="encoder-linear-format"):
        ServerArgs(encoder_linear_format="int8")
