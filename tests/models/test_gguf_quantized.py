"""The default GGUF model (Q4_1 layers, Q8_0 tied embedding) kept quantized on the native kernels
against the same file dequantised to float32: they read the same numbers, so the logits agree
closely and greedy decoding picks the same tokens."""

from __future__ import annotations

from typing import Any, Optional

import pytest
import torch
from model_harness import Driver, greedy, use_kernels

from radixserve.layers.linear import Linear
from radixserve.models.loader import load_model, load_model_config
from radixserve.models.tokenizer import load_tokenizer

PROMPTS = [
    "The capital of France is Paris, and the capital of",
    "Once upon a time",
    "def fibonacci(n):",
]
CHAT = "What is the capital of France?"
STEPS = 16


def _load(dtype: str) -> Any:
    model = load_model(load_model_config(None, dtype, native_kernels=True))
    use_kernels(model, "native")  # packs the Linears, as the ModelRunner does
    return model


@pytest.fixture(scope="module")
def quantized() -> Any:
    return _load("auto")


@pytest.fixture(scope="module")
def dequantised() -> Any:
    return _load("float32")


def _prompts() -> list[list[int]]:
    tok = load_tokenizer(None)
    chat = tok.apply_chat_template([{"role": "user", "content": CHAT}], add_generation_prompt=True)
    if not isinstance(chat, list):
        chat = chat["input_ids"]
    return [tok.encode(p) for p in PROMPTS] + [list(chat)]


def _decode(
    model: Any, prompt: list[int], kv_dtype: Optional[torch.dtype] = None
) -> tuple[list[int], list[torch.Tensor]]:
    drv = Driver(model, backend="native", kv_dtype=kv_dtype)
    req = drv.new_req()
    logits = drv.step([(req, prompt)])
    out, all_logits = [], [logits[0]]
    for _ in range(STEPS):
        tok = greedy(logits)
        out += tok
        logits = drv.step([(req, tok)])
        all_logits.append(logits[0])
    return out, all_logits


def test_weights_stay_quantized(quantized: Any, dequantised: Any) -> None:
    assert quantized.config.keep_quantized and not dequantised.config.keep_quantized
    linears = [m for m in quantized.modules() if isinstance(m, Linear)]
    assert linears and all(m.quant_packed is not None and m.packed is None for m in linears)
    assert all(m.weight.numel() == 0 for m in linears)  # one copy: the packed one
    from radixserve import _C

    layer = quantized.model.layers[0]
    assert _C.quant_weight_info(layer.self_attn.qkv_proj.quant_packed) == ("q4_1", 960, 576)
    assert _C.quant_weight_info(layer.mlp.gate_up_proj.quant_packed) == ("q4_1", 3072, 576)
    # Tied embedding: the LM head and the lookup share one packed Q8_0 tensor.
    assert quantized.lm_head.quant_packed is quantized.embed_packed
    assert _C.quant_weight_info(quantized.embed_packed) == ("q8_0", 49152, 576)
    packed = sum(m.quant_packed.numel() for m in linears if m is not quantized.lm_head)
    assert packed + quantized.embed_packed.numel() < 120e6  # vs ~540 MB in float32


def test_same_greedy_tokens_and_close_logits(quantized: Any, dequantised: Any) -> None:
    for prompt in _prompts():
        ours, ours_logits = _decode(quantized, prompt)
        ref, ref_logits = _decode(dequantised, prompt)
        assert ours == ref, (prompt, ours, ref)
        for a, b in zip(ours_logits, ref_logits, strict=True):
            torch.testing.assert_close(a, b, atol=3e-2, rtol=0)  # observed max 1.6e-2


def test_bf16_kv_cache_keeps_the_greedy_tokens(quantized: Any) -> None:
    """--kv-cache-dtype bfloat16 on the default model: the fidelity prompts decode to the same
    tokens as with the fp32 pool, logits close."""
    for prompt in _prompts():
        ours, ours_logits = _decode(quantized, prompt, kv_dtype=torch.bfloat16)
        ref, ref_logits = _decode(quantized, prompt)
        assert ours == ref, (prompt, ours, ref)
        pairs = zip(ours_logits, ref_logits, strict=True)
        worst = max(float((a - b).abs().max()) for a, b in pairs)
        # Observed 0.10-0.15 on logits of magnitude 30-42: bf16 K/V carry 8 mantissa bits.
        assert 0 < worst < 0.3, worst
