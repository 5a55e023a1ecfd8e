"""Llama-family models through ForwardBatch / req_to_token / KV pool against transformers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_harness import Driver, greedy, hf_logits, make_tiny_model, random_prompt, use_kernels

from radixserve.engine.model_runner import NATIVE_LAYER_OPS, missing_native_ops
from radixserve.layers.attention import native_attention_available
from radixserve.layers.backend import set_kernel_backend
from radixserve.models.loader import load_model, load_model_config

ATOL = 1e-4
ATTN = ["torch"] + (["native"] if native_attention_available() else [])
NATIVE_LAYERS = not missing_native_ops(NATIVE_LAYER_OPS)


@pytest.fixture(autouse=True)
def torch_kernels() -> Any:
    set_kernel_backend("torch")
    yield
    set_kernel_backend("native")


def build(kind: str, tmp: Any, **overrides: Any) -> tuple[Any, Any]:
    path = str(tmp / kind)
    hf = make_tiny_model(kind, path, **overrides)
    model = load_model(load_model_config(path, "float32"))
    return hf, model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    tmp = tmp_path_factory.mktemp("tiny")
    set_kernel_backend("torch")
    return {kind: build(kind, tmp) for kind in ("llama", "qwen2", "qwen3")}


def run_prefill_decode(
    hf: Any, model: Any, prompt_len: int, steps: int = 10, attn: str = "torch"
) -> None:
    drv = Driver(model, attn)
    req = drv.new_req()
    prompt = random_prompt(prompt_len)
    logits = drv.step([(req, prompt)])
    torch.testing.assert_close(logits[0], hf_logits(hf, prompt)[-1], atol=ATOL, rtol=0)
    for _ in range(steps):
        logits = drv.step([(req, greedy(logits))])
        torch.testing.assert_close(logits[0], hf_logits(hf, req.tokens)[-1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_prefill_and_decode_match_transformers(
    models: dict[str, Any], kind: str, attn: str
) -> None:
    hf, model = models[kind]
    run_prefill_decode(hf, model, prompt_len=13, attn=attn)


@pytest.mark.skipif(not NATIVE_LAYERS, reason="radixserve._C lacks the norm/rope/linear kernels")
@pytest.mark.parametrize(
    "kind,dtype",
    [("llama", "float32"), ("qwen2", "float32"), ("qwen3", "float32"), ("qwen3", "bfloat16")],
)
def test_native_kernels_match_transformers(
    models: dict[str, Any], tmp_path: Any, kind: str, dtype: str
) -> None:
    """Native norm/rope/activation/linear and attention kernels, float32 tight, bf16 loose."""
    if dtype == "float32":
        hf, model = models[kind]
    else:
        path = str(tmp_path / kind)
        hf = make_tiny_model(kind, path)
        model = load_model(load_model_config(path, dtype))
    use_kernels(model, "native")
    try:
        drv = Driver(model, ATTN[-1])
        req = drv.new_req()
        logits = drv.step([(req, random_prompt(12))])
        tol = ATOL if dtype == "float32" else 2e-2
        for _ in range(6):
            want = hf_logits(hf, req.tokens)[-1]
            torch.testing.assert_close(logits[0], want, atol=tol, rtol=0)
            logits = drv.step([(req, greedy(logits))])
    finally:
        use_kernels(model, "torch")


def test_position_beyond_context_is_refused(models: dict[str, Any]) -> None:
    _, model = models["llama"]
    drv = Driver(model)
    req = drv.new_req()
    req.tokens = [5] * model.config.context_len  # pretend the context is already full
    with pytest.raises(ValueError, match="beyond the context length"):
        drv.step([(req, [6])])


def test_config_features(models: dict[str, Any]) -> None:
    assert models["qwen2"][1].config.attention_bias
    assert models["qwen2"][1].model.layers[0].self_attn.qkv_proj.bias is not None
    assert models["qwen3"][1].config.qk_norm
    assert models["llama"][1].model.layers[0].self_attn.q_norm is None


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_mixed_batch_matches_one_by_one(models: dict[str, Any], kind: str, attn: str) -> None:
    """Prefill chunks and decodes packed together give the logits each gets alone."""
    hf, model = models[kind]
    a, b, c = random_prompt(12, 1), random_prompt(9, 2), random_prompt(4, 3)
    drv = Driver(model, attn)
    ra, rb, rc = drv.new_req(), drv.new_req(), drv.new_req()
    drv.step([(ra, a[:5]), (rb, b)])  # a: first chunk; b: whole prompt
    nb = 7  # b's next token (any token works: logits are compared, not sampled)
    mixed = drv.step([(ra, a[5:]), (rb, [nb]), (rc, c)])  # chunk + decode + new prompt
    refs = [hf_logits(hf, a)[-1], hf_logits(hf, b + [nb])[-1], hf_logits(hf, c)[-1]]
    for got, want in zip(mixed, refs, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # Alone, on a fresh pool: the same logits.
    for prompt, row in ((a, 0), (b + [nb], 1), (c, 2)):
        solo = Driver(model, attn)
        got = solo.step([(solo.new_req(), prompt)])[0]
        torch.testing.assert_close(mixed[row], got, atol=ATOL, rtol=0)
    # Then a batch of pure decodes (the decode path) for all three.
    nxt = greedy(mixed)
    dec = drv.step([(ra, [nxt[0]]), (rb, [nxt[1]]), (rc, [nxt[2]])])
    for i, r in enumerate((ra, rb, rc)):
        torch.testing.assert_close(dec[i], hf_logits(hf, r.tokens)[-1], atol=ATOL, rtol=0)


def test_input_logits_positions(models: dict[str, Any]) -> None:
    """With logits_indices, every requested position gets logits (input logprobs)."""
    hf, model = models["llama"]
    drv = Driver(model)
    prompt = random_prompt(8)
    req = drv.new_req()
    drv.step([(req, prompt[:3])])
    logits = drv.step([(req, prompt[3:])], all_logits=True)
    assert logits.shape == (5, model.config.vocab_size) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, hf_logits(hf, prompt)[3:], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "kind,overrides",
    [
        ("llama", {"tie_word_embeddings": True}),
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
        (
            "llama",
            {
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                }
            },
        ),
        (
            "llama",
            {
                "rope_scaling": {
                    "rope_type": "yarn",
                    "factor": 4.0,
                    "original_max_position_embeddings": 64,
                }
            },
        ),
        ("mistral", {"sliding_window": 5, "attn_implementation": "eager"}),
        (
            "qwen2",
            {
                "use_sliding_window": True,
                "sliding_window": 4,
                "max_window_layers": 1,
                "attn_implementation": "eager",
            },
        ),
    ],
    ids=[
        "tied",
        "rope-linear",
        "rope-llama3",
        "rope-yarn",
        "mistral-window",
        "qwen2-window-layer1",
    ],
)
def test_variants_match_transformers(tmp_path: Any, kind: str, overrides: dict[str, Any]) -> None:
    hf, model = build(kind, tmp_path, **overrides)
    if "sliding_window" in overrides:
        assert model.config.sliding_window == overrides["sliding_window"]
    if "max_window_layers" in overrides:
        assert model.config.layer_sliding_windows == [-1, overrides["sliding_window"]]
    if "rope_scaling" in overrides:
        assert model.config.rope_scaling is not None
    for attn in ATTN:
        run_prefill_decode(hf, model, prompt_len=11, steps=6, attn=attn)
