"""The default GGUF model (SmolLM2-135M-Instruct Q4_1) against transformers' own GGUF loader."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from model_harness import Driver, greedy

from radixserve.layers.backend import set_kernel_backend
from radixserve.models import gguf_loader
from radixserve.models.default_model import default_model_path
from radixserve.models.loader import load_model, load_model_config
from radixserve.models.tokenizer import load_tokenizer

ATOL = 1e-3


@pytest.fixture(scope="module", autouse=True)
def torch_kernels() -> Any:
    set_kernel_backend("torch")
    yield
    set_kernel_backend("native")


@pytest.fixture(scope="module")
def ours(torch_kernels: Any) -> Any:
    return load_model(load_model_config(None, "float32"))


@pytest.fixture(scope="module")
def reference(ours: Any) -> Any:
    """transformers' LlamaForCausalLM with the config and tensors its own GGUF parser reads."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    c = ours.config
    # A meta-device model only names the tensors for transformers' loader.
    naming = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
    )
    with torch.device("meta"):
        meta = LlamaForCausalLM(naming)
    parsed = load_gguf_checkpoint(default_model_path(), return_tensors=True, model_to_load=meta)
    config = LlamaConfig(**parsed["config"])
    with torch.device("meta"):  # skip the random init: every weight is assigned below
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(
        {k: torch.as_tensor(v).float() for k, v in parsed["tensors"].items()},
        strict=False,
        assign=True,
    )
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)  # its buffers, for real
    return model.float().eval()


def test_default_model_config(ours: Any) -> None:
    cfg = ours.config
    assert cfg.architectures == ["LlamaForCausalLM"]
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (30, 576, 9, 3)
    assert cfg.vocab_size == 49152 and cfg.tie_word_embeddings
    assert cfg.eos_token_ids == [2] and cfg.bos_token_id == 1
    assert cfg.chat_template and "<|im_start|>" in cfg.chat_template


def test_unpermute_inverts_llama_cpp_permute() -> None:
    def permute(w: np.ndarray, n_head: int) -> np.ndarray:  # convert_hf_to_gguf.py
        return (
            w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    w = np.random.default_rng(0).standard_normal((3 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(gguf_loader.unpermute_qk(permute(w, 3), 3), w)


def test_tokenizer_and_chat_template() -> None:
    tok = load_tokenizer(None)
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    if not isinstance(ids, list):
        ids = ids["input_ids"]
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert tok.eos_token_id == 2 and tok.decode(tok.encode("Hello world")) == "Hello world"


def test_prefill_and_decode_match_transformers(ours: Any, reference: Any) -> None:
    drv = Driver(ours)
    prompt = load_tokenizer(None).encode("The capital of France is Paris, and the capital of")
    req = drv.new_req()
    logits = drv.step([(req, prompt)])
    with torch.no_grad():
        ref = reference(torch.tensor([prompt])).logits[0, -1].float()
    torch.testing.assert_close(logits[0], ref, atol=ATOL, rtol=0)
    for _ in range(10):
        logits = drv.step([(req, greedy(logits))])
        with torch.no_grad():
            ref = reference(torch.tensor([req.tokens])).logits[0, -1].float()
        torch.testing.assert_close(logits[0], ref, atol=ATOL, rtol=0)
