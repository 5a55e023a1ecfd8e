"""Tokenizers for Hugging Face folders and GGUF files (both as transformers fast tokenizers).

Building a tokenizer from GGUF metadata takes seconds, so the result is saved once under
$RADIXSERVE_CACHE_DIR (default ~/.cache/radixserve) keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Optional

from radixserve.models.default_model import default_model_path

logger = logging.getLogger(__name__)


def encode_text(tokenizer: Any, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids of `text`, as tokenizer.encode gives them. A transformers fast tokenizer is
    asked through its Rust tokenizer directly (the same ids; ~15 instead of ~45 us for a short
    sentence: the Python wrapper builds a BatchEncoding around them); others through encode.
    The Rust tokenizer keeps padding and truncation settings (a tokenizer.json may carry them,
    a truncating call leaves them): encode turns them off, so while any is on, encode it is."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.padding is not None or backend.truncation is not None:
        return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))
    ids: list[int] = backend.encode(text, add_special_tokens=add_special_tokens).ids
    return ids


@functools.lru_cache(maxsize=8)  # per tokenizer: /extend asks on every request
def added_bos(tokenizer: Any) -> Optional[int]:
    """The BOS id the tokenizer puts before every text, or None when it adds none. A
    continuation drops that added BOS; where encoding adds none (SmolLM2: its BOS id is
    <|im_start|>, which opens each chat turn), a leading BOS id is content and stays."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    ids = encode_text(tokenizer, "a")
    return int(bos) if ids and ids[0] == bos else None


def cache_dir() -> str:
    root = os.environ.get("RADIXSERVE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "radixserve"
    )
    return root


def _gguf_cache_key(path: str) -> str:
    st = os.stat(path)
    raw = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _load_saved_tokenizer(folder: str) -> Any:
    """A tokenizer this module saved. The class it saved (TokenizersBackend, the fast
    tokenizer every GGUF vocabulary becomes) is loaded directly: AutoTokenizer's class lookup
    imports transformers' configuration code and with it torch, which the HTTP process
    otherwise never needs (~200 MB resident, seconds of start-up)."""
    with open(os.path.join(folder, "tokenizer_config.json")) as f:
        saved_class = json.load(f).get("tokenizer_class")
    if saved_class == "TokenizersBackend":
        from transformers.tokenization_utils_tokenizers import TokenizersBackend

        return TokenizersBackend.from_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _load_gguf_tokenizer(path: str) -> Any:
    cached = os.path.join(cache_dir(), "tokenizers", _gguf_cache_key(path))
    if os.path.isfile(os.path.join(cached, "tokenizer.json")):
        try:
            return _load_saved_tokenizer(cached)
        except Exception as e:  # a damaged cache is rebuilt below
            logger.warning("ignoring unreadable tokenizer cache %s: %s", cached, e)
    from transformers import AutoTokenizer

    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(cached))
        tok.save_pretrained(tmp)
        if os.path.isdir(cached):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, cached)  # atomic: concurrent processes never see half a cache
    except OSError as e:
        logger.warning("could not cache the GGUF tokenizer: %s", e)
    return tok


def load_tokenizer(model_path: Optional[str], tokenizer_path: Optional[str] = None) -> Any:
    """A transformers fast tokenizer for a HF folder, a GGUF file, or a folder holding one GGUF."""
    path = tokenizer_path or model_path or default_model_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer path does not exist: {path}")
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise ValueError(f"a tokenizer file must be a .gguf file, got {path}")
        return _load_gguf_tokenizer(path)
    has_hf = any(
        os.path.isfile(os.path.join(path, f))
        for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    )
    if not has_hf:
        ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
        if len(ggufs) == 1:
            return _load_gguf_tokenizer(os.path.join(path, ggufs[0]))
        raise FileNotFoundError(
            f"no tokenizer files (tokenizer.json, tokenizer_config.json) in {path}"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
