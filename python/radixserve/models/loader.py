"""Model loading: resolve the path, build the ModelConfig, create the model and fill its weights.

Hugging Face folders (config.json + *.safetensors, optionally sharded through
model.safetensors.index.json) and GGUF files (or a folder holding exactly one) are supported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Optional

import torch
from tqdm import tqdm

from radixserve.layers.linear import QUANT_TYPES
from radixserve.models import gguf_loader
from radixserve.models.config import ModelConfig, eos_ids, model_config_from_hf
from radixserve.models.default_model import default_model_path
from radixserve.models.pooling_config import apply_pooling_config
from radixserve.models.registry import resolve_model_class

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_dtype(name: str) -> torch.dtype:
    """auto: float32. bfloat16 must be asked for.

    bfloat16 decodes faster here (23 vs 31 ms a token for the default model: decode streams the
    weights and bfloat16 halves them), but it changes the default model's answers: greedy chat
    output for "What is the capital of France?" is "The capital of France is Paris." in float32
    and unrelated French text in bfloat16, on the native kernels and the PyTorch path alike.
    """
    if name == "auto":
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"--dtype must be one of auto, float32, bfloat16, got {name!r}")
    return DTYPES[name]


def resolve_model_path(path: Optional[str]) -> tuple[str, Optional[str]]:
    """(path, GGUF file or None). A folder with config.json is a HF model; a .gguf file, or a
    folder holding exactly one, is GGUF."""
    path = path or default_model_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"model path does not exist: {path}")
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise ValueError(f"a model file must be a .gguf file, got {path}")
        return path, path
    if os.path.isfile(os.path.join(path, "config.json")):
        return path, None
    ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
    if len(ggufs) == 1:
        return path, os.path.join(path, ggufs[0])
    if len(ggufs) > 1:
        raise ValueError(f"{path} holds several .gguf files ({', '.join(ggufs)}): pass one of them")
    raise FileNotFoundError(f"{path} has no config.json (Hugging Face model) and no .gguf file")


def _hf_chat_template(folder: str) -> Optional[str]:
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja) as f:
            return f.read()
    cfg = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(cfg):
        with open(cfg) as f:
            template = json.load(f).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def load_model_config(
    model_path: Optional[str],
    dtype: str = "auto",
    context_length: Optional[int] = None,
    native_kernels: bool = False,
    is_embedding: bool = False,
) -> ModelConfig:
    path, gguf_file = resolve_model_path(model_path)
    if gguf_file is not None:
        config = gguf_loader.gguf_model_config(gguf_file)
        config.path = path
        if is_embedding:
            apply_pooling_config(config, None, True)  # a GGUF causal LM: last-token embeddings
    else:
        from transformers import AutoConfig

        try:
            hf = AutoConfig.from_pretrained(path)
        except (ValueError, KeyError) as e:
            raise ValueError(f"cannot read {os.path.join(path, 'config.json')}: {e}") from e
        extra_eos: list[int] = []
        gen = os.path.join(path, "generation_config.json")
        if os.path.isfile(gen):
            with open(gen) as f:
                extra_eos = eos_ids(json.load(f).get("eos_token_id"))
        config = model_config_from_hf(hf, path, extra_eos)
        config.chat_template = _hf_chat_template(path)
        apply_pooling_config(config, hf, is_embedding)
    resolve_model_class(config.architectures)  # unsupported architectures fail here, clearly
    if context_length is not None:
        config.context_len = context_length
    config.dtype = resolve_dtype(dtype)
    # auto on a quantized GGUF: keep the file's quantization (the native kernels read it);
    # float32/bfloat16 dequantise at load as before. Activations stay in config.dtype.
    # Causal LMs only: pooling heads load float weights.
    config.keep_quantized = (
        gguf_file is not None and dtype == "auto" and native_kernels and config.is_generation
    )
    return config


def _safetensors_files(folder: str) -> list[str]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
        if missing:
            raise FileNotFoundError(f"shards listed in {index} are missing: {', '.join(missing)}")
        return [os.path.join(folder, s) for s in shards]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files and _torch_bin_files(folder):
        return []  # PyTorch .bin checkpoint (iter_safetensors reads those instead)
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    return [os.path.join(folder, f) for f in files]


def iter_safetensors(folder: str) -> tuple[int, Iterator[tuple[str, torch.Tensor]]]:
    """(number of tensors, iterator of (name, tensor)) over every shard of the folder."""
    from safetensors import safe_open

    files = _safetensors_files(folder)
    if not files:
        return _iter_torch_bin(folder)
    count = 0
    for path in files:
        with safe_open(path, framework="pt") as f:
            count += len(list(f.keys()))

    def gen() -> Iterator[tuple[str, torch.Tensor]]:
        for path in files:
            with safe_open(path, framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)

    return count, gen()


def _torch_bin_files(folder: str) -> list[str]:
    """pytorch_model.bin, or its shards (pytorch_model-00001-of-00002.bin ...)."""
    names = sorted(f for f in os.listdir(folder) if f.startswith("pytorch_model") and f.endswith(".bin"))
    return [os.path.join(folder, f) for f in names]


def _iter_torch_bin(folder: str) -> tuple[int, Iterator[tuple[str, torch.Tensor]]]:
    """Older checkpoints (many BERT models): torch.load with weights_only (no pickled code)."""
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in _torch_bin_files(folder)]
    return sum(len(s) for s in states), ((n, t) for s in states for n, t in s.items())


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def load_model(config: ModelConfig, weights_path: Optional[str] = None) -> Any:
    """Create the model in config.dtype and load its weights (from config.path by default).

    Any: a causal LM (LlamaForCausalLM family) or a pooling model (BERT, classifiers), all
    nn.Modules with `load_weights`."""
    start = time.perf_counter()
    cls = resolve_model_class(config.architectures, is_embedding=not config.is_generation)
    with _default_dtype(config.dtype):
        model: Any = cls(config)
    path, gguf_file = resolve_model_path(weights_path or config.path)
    if gguf_file is not None:
        total = gguf_loader.num_gguf_tensors(gguf_file)
        if config.keep_quantized:
            types = gguf_loader.gguf_tensor_types(gguf_file)
            logger.info(
                "GGUF tensor types %s: %s kept quantized, the others dequantised to %s",
                types,
                "/".join(t for t in QUANT_TYPES if t in types) or "none",
                str(config.dtype).replace("torch.", ""),
            )
        weights = gguf_loader.iter_gguf_weights(gguf_file, config, config.keep_quantized)
    else:
        total, weights = iter_safetensors(path)
    bar = tqdm(
        weights,
        total=total,
        desc="Loading weights",
        unit="tensor",
        file=sys.stderr,
        leave=False,
        disable=None,
    )
    with torch.inference_mode():
        model.load_weights(bar)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    if getattr(model, "embed_packed", None) is not None:  # kept quantized: empty placeholder
        params += config.vocab_size * config.hidden_size
    logger.info(
        "Loaded %s (%s) from %s: %.1fM parameters, %s, %d layers, context %d, in %.1f s",
        config.architecture,
        config.model_type,
        gguf_file or path,
        params / 1e6,
        str(config.dtype).replace("torch.", ""),
        config.num_layers,
        config.context_len,
        time.perf_counter() - start,
    )
    return model
