"""GGUF files (llama.cpp): config from the metadata, tensors dequantized to Hugging Face names.

llama.cpp's converter permutes the rows of the q/k projections of `llama`-architecture models
(rope on interleaved pairs); `unpermute_qk` undoes it exactly as transformers' GGUF loader does,
so the weights work with the neox-style (rotate-halves) rope of the HF implementation.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from typing import Any, Union

import numpy as np
import torch

from radixserve.layers.linear import QUANT_TYPES, QuantizedWeight
from radixserve.models.config import ModelConfig
from radixserve.models.gguf_file import GGUFFile

# GGUF general.architecture -> Hugging Face architecture.
GGUF_ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


@functools.lru_cache(maxsize=2)
def open_gguf(path: str) -> GGUFFile:
    """The file's metadata and memory-mapped tensors, parsed once per file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    return GGUFFile(path)


def release_gguf_readers() -> None:
    """Drop the cached readers (and their file mappings) once loading is over."""
    open_gguf.cache_clear()


def gguf_metadata(path: str, keys_prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Scalar, string and small-array metadata (the big tokenizer arrays are never decoded)."""
    meta = open_gguf(path).metadata
    return {k: v for k, v in meta.items() if not keys_prefix or k.startswith(keys_prefix)}


def gguf_model_config(path: str) -> ModelConfig:
    reader = open_gguf(path)
    meta = gguf_metadata(path)
    arch = str(meta.get("general.architecture", ""))
    if arch not in GGUF_ARCHS:
        raise ValueError(
            f"unsupported GGUF architecture {arch!r} in {path}; supported: "
            f"{', '.join(sorted(GGUF_ARCHS))}"
        )
    hf_arch = GGUF_ARCHS[arch]
    if arch == "llama" and "mistral" in str(meta.get("general.name", "")).lower():
        hf_arch = "MistralForCausalLM"

    def get(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{key}", default)

    names = {t.name for t in reader.tensors}
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    hidden = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    layers = int(get("block_count"))
    scaling = None
    kind = get("rope.scaling.type")
    if kind and kind != "none":
        scaling = {"rope_type": kind, "factor": float(get("rope.scaling.factor", 1.0))}
        if get("rope.scaling.original_context_length"):
            scaling["original_max_position_embeddings"] = int(
                get("rope.scaling.original_context_length")
            )
    window = int(get("attention.sliding_window", 0) or 0)
    eos = (
        [int(meta["tokenizer.ggml.eos_token_id"])] if "tokenizer.ggml.eos_token_id" in meta else []
    )
    eot = meta.get("tokenizer.ggml.eot_token_id")
    if eot is not None and int(eot) not in eos:
        eos.append(int(eot))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    return ModelConfig(
        path=path,
        architectures=[hf_arch],
        model_type="mistral" if hf_arch == "MistralForCausalLM" else arch,
        vocab_size=int(embd.shape[1]),
        hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length")),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(get("attention.head_count_kv", heads)),
        head_dim=int(get("attention.key_length", hidden // heads)),
        context_len=int(get("context_length", 2048)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        eos_token_ids=eos,
        bos_token_id=None if bos is None else int(bos),
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        qk_norm="blk.0.attn_q_norm.weight" in names,
        layer_sliding_windows=[window if window > 0 else -1] * layers,
        chat_template=meta.get("tokenizer.chat_template"),
        gguf_file=path,
    )


def hf_name(gguf_name: str) -> str:
    m = _BLOCK.match(gguf_name)
    if m:
        layer, part, kind = m.groups()
        if part not in _LAYER_NAMES:
            raise ValueError(f"unknown GGUF tensor {gguf_name!r}")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    stem, _, kind = gguf_name.rpartition(".")
    if stem not in _GLOBAL_NAMES:
        raise ValueError(f"unknown GGUF tensor {gguf_name!r}")
    return f"{_GLOBAL_NAMES[stem]}.{kind}"


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's `permute` (convert_hf_to_gguf.py) on q/k rows (or biases)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def num_gguf_tensors(path: str) -> int:
    return len(open_gguf(path).tensors)


def gguf_tensor_types(path: str) -> dict[str, int]:
    """How many tensors of each GGML type (e.g. {"Q4_1": 210, "Q8_0": 1, "F32": 61})."""
    counts: dict[str, int] = {}
    for t in open_gguf(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts


def iter_gguf_weights(
    path: str, config: ModelConfig, keep_quantized: bool = False
) -> Iterator[tuple[str, Union[torch.Tensor, QuantizedWeight]]]:
    """(Hugging Face name, float32 tensor) for every tensor of the file.

    With keep_quantized, 2-D weights in a type the native kernels read (QUANT_TYPES) come as
    QuantizedWeight (their GGUF blocks, unchanged apart from the q/k row order); every other
    type is dequantised to float32 as before.
    """
    from gguf.quants import dequantize

    reader = open_gguf(path)
    permuted = config.architectures[0] in ("LlamaForCausalLM", "MistralForCausalLM")
    for t in reader.tensors:
        if t.name == "rope_freqs.weight":  # llama3 frequency factors: rope comes from the config
            continue
        name = hf_name(t.name)
        qtype = t.tensor_type.name
        if keep_quantized and qtype in QUANT_TYPES and t.data.ndim == 2:
            raw = np.asarray(t.data, dtype=np.uint8)  # [rows, bytes per row]
            if permuted and ".self_attn.q_proj." in name:  # whole rows move: blocks stay intact
                raw = unpermute_qk(raw, config.num_heads)
            elif permuted and ".self_attn.k_proj." in name:
                raw = unpermute_qk(raw, config.num_kv_heads)
            cols = int(t.shape[0])  # GGUF shapes are [cols, rows]
            data = torch.from_numpy(np.array(raw, dtype=np.uint8, order="C"))
            yield name, QuantizedWeight(qtype, data, (data.shape[0], cols))
            continue
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if permuted and ".self_attn.q_proj." in name:
            w = unpermute_qk(w, config.num_heads)
        elif permuted and ".self_attn.k_proj." in name:
            w = unpermute_qk(w, config.num_kv_heads)
        if not (w.flags.writeable and w.flags.c_contiguous):  # F32 tensors are views of the mmap
            w = np.array(w, dtype=np.float32, order="C")
        yield name, torch.from_numpy(w)
