"""What a pooling model needs beyond ModelConfig's decoder fields: read from the HF folder.

- Which architectures pool (embeddings, classifiers) and which are encoders (bidirectional).
- The sentence-transformers pooling of a folder: `modules.json` lists the Pooling module's
  folder (e.g. `1_Pooling/config.json`, `pooling_mode_mean_tokens` / `_cls_token` /
  `_lasttoken`) and whether a Normalize module follows. Without those files: mean pooling for
  encoders, last-token pooling for decoders, and L2 normalisation (SGLang's default).
"""

from __future__ import annotations

import json
import os
from typing import Any

from radixserve.models.config import ModelConfig

ENCODER_ARCHITECTURES = ("BertModel", "BertForSequenceClassification")
CLASSIFIER_ARCHITECTURES = ("BertForSequenceClassification", "LlamaForSequenceClassification")
POOLING_ARCHITECTURES = ENCODER_ARCHITECTURES + CLASSIFIER_ARCHITECTURES


def is_pooling_architecture(architectures: list[str]) -> bool:
    return any(a in POOLING_ARCHITECTURES for a in architectures)


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def sentence_transformers_pooling(folder: str, default: str) -> tuple[str, bool]:
    """(pooling method, normalize) from modules.json and the Pooling module's config."""
    modules_path = os.path.join(folder, "modules.json")
    if not os.path.isfile(modules_path):
        return default, True
    modules = _read_json(modules_path)
    method, normalize = default, False
    for m in modules:
        kind = str(m.get("type", ""))
        if kind.endswith(".Normalize"):
            normalize = True
        elif kind.endswith(".Pooling"):
            cfg_path = os.path.join(folder, str(m.get("path", "")), "config.json")
            if os.path.isfile(cfg_path):
                cfg = _read_json(cfg_path)
                if cfg.get("pooling_mode_cls_token"):
                    method = "cls"
                elif cfg.get("pooling_mode_lasttoken"):
                    method = "last"
                elif cfg.get("pooling_mode_mean_tokens"):
                    method = "mean"
    return method, normalize


def apply_pooling_config(config: ModelConfig, hf: Any, is_embedding: bool) -> None:
    """Fill the pooling fields of `config`; a no-op for a plain generative model."""
    archs = config.architectures
    if not (is_embedding or is_pooling_architecture(archs)):
        return
    config.is_generation = False
    config.is_encoder = any(a in ENCODER_ARCHITECTURES for a in archs)
    config.is_classifier = any(a in CLASSIFIER_ARCHITECTURES for a in archs)
    if config.is_classifier:
        id2label = getattr(hf, "id2label", None) or {}
        config.num_labels = int(getattr(hf, "num_labels", 0) or len(id2label))
        config.labels = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}")))
                         for i in range(config.num_labels)]  # fmt: skip
    if config.is_encoder:
        config.layer_norm_eps = float(getattr(hf, "layer_norm_eps", 1e-12))
        config.type_vocab_size = int(getattr(hf, "type_vocab_size", 0) or 0)
        config.hidden_act = str(getattr(hf, "hidden_act", "gelu"))
    default = "mean" if config.is_encoder else "last"
    config.pooling_method, config.normalize_embeddings = sentence_transformers_pooling(
        config.path, default
    )
