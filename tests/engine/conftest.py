"""Fixtures: a tiny random Llama (transformers) saved as a HF folder, with SmolLM2's tokenizer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

VOCAB = 49152  # SmolLM2's tokenizer


def save_tiny_llama(path: Path, hidden_size: int = 64) -> str:
    """A 2-layer random Llama (4 query heads, 2 KV heads: head_dim = hidden_size / 4) in `path`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from radixserve.models.tokenizer import load_tokenizer

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).to(torch.float32)
    # Larger logits than the default init, so greedy picks are far from ties.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(path, safe_serialization=True)
    # A GPU machine without the default model gets its tokenizer folder (tools/gpu_check.sh).
    load_tokenizer(os.environ.get("RADIXSERVE_TEST_TOKENIZER")).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def hf_tiny(tiny_llama_dir: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()


def hf_greedy(model: Any, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
    return [int(t) for t in out[0, len(ids) :]]


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
