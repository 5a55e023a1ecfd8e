"""Model loading: paths, sharded safetensors, dtype choice and clear errors."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import torch
from model_harness import Driver, hf_logits, make_tiny_model, random_prompt

from radixserve.layers.backend import set_kernel_backend
from radixserve.models.default_model import default_model_path
from radixserve.models.loader import load_model, load_model_config, resolve_dtype
from radixserve.models.tokenizer import load_tokenizer


@pytest.fixture(autouse=True)
def torch_kernels() -> Any:
    set_kernel_backend("torch")
    yield
    set_kernel_backend("native")


def test_default_model_path() -> None:
    path = default_model_path()
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and os.path.isfile(path)


def test_missing_path_is_clear(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_config(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope"))


def test_unknown_architecture_is_clear(tmp_path: Any) -> None:
    path = str(tmp_path / "m")
    make_tiny_model("llama", path)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    cfg["architectures"] = ["FancyNetForCausalLM"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match="unsupported model architecture.*FancyNet"):
        load_model_config(path)


def test_missing_and_misshapen_tensors_are_clear(tmp_path: Any) -> None:
    from safetensors.torch import load_file, save_file

    path = str(tmp_path / "m")
    make_tiny_model("llama", path)
    cfg = load_model_config(path, "float32")
    weights = load_file(os.path.join(path, "model.safetensors"))
    name = "model.layers.1.self_attn.k_proj.weight"
    broken = dict(weights)
    del broken[name]
    save_file(broken, os.path.join(path, "model.safetensors"))
    with pytest.raises(ValueError, match=f"missing tensors: {name}"):
        load_model(cfg)
    broken[name] = torch.zeros(3, 3)
    save_file(broken, os.path.join(path, "model.safetensors"))
    with pytest.raises(ValueError, match=f"{name}.*shape"):
        load_model(cfg)


def test_sharded_safetensors(tmp_path: Any) -> None:
    path = str(tmp_path / "m")
    hf = make_tiny_model("qwen2", path)
    hf.save_pretrained(path, max_shard_size="40KB")  # replaces the single file with shards
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):  # only the shards and their index must remain
        os.remove(single)
    assert os.path.isfile(os.path.join(path, "model.safetensors.index.json"))
    model = load_model(load_model_config(path, "float32"))
    drv = Driver(model)
    prompt = random_prompt(6)
    got = drv.step([(drv.new_req(), prompt)])[0]
    torch.testing.assert_close(got, hf_logits(hf, prompt)[-1], atol=1e-4, rtol=0)


def test_hf_config_fields_and_bf16(tmp_path: Any) -> None:
    path = str(tmp_path / "m")
    hf = make_tiny_model("qwen3", path)
    cfg = load_model_config(path, "bfloat16", context_length=64)
    assert cfg.dtype == torch.bfloat16 and cfg.context_len == 64
    assert cfg.architectures == ["Qwen3ForCausalLM"] and cfg.qk_norm and cfg.head_dim == 16
    assert cfg.eos_token_ids == [2] and cfg.num_kv_heads == 2
    model = load_model(cfg)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    drv = Driver(model)
    prompt = random_prompt(9)
    got = drv.step([(drv.new_req(), prompt)])[0]
    ref = hf_logits(hf, prompt)[-1]
    assert got.dtype == torch.float32
    assert (got - ref).abs().max() < 0.1 and got.argmax() == ref.argmax()
    tok = load_tokenizer(path)
    assert tok.encode("w5 w6") == [5, 6]


def test_resolve_dtype() -> None:
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype("auto") == torch.float32
    with pytest.raises(ValueError, match="--dtype"):
        resolve_dtype("float16")
