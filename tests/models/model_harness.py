"""Test harness: tiny random Hugging Face models and a minimal request driver over the pools.

The driver plays the scheduler's part (req_to_token rows, KV slots, packed ForwardBatch) so the
model's logits can be compared with transformers run on the full sequences.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from radixserve.cache.memory_pool import KVPool, ReqToTokenPool
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention import create_attention_backend
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import Linear
from radixserve.models.llama import LlamaForCausalLM

VOCAB = 320


def tiny_hf_config(kind: str, **overrides: Any) -> Any:
    """kind: llama | qwen2 | qwen3 | mistral (2 layers, hidden 64, 4 heads, 2 kv heads)."""
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    common.update(overrides)
    cls = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "mistral": transformers.MistralConfig,
    }[kind]
    if kind == "qwen3":
        common.setdefault("head_dim", 16)
    if kind == "mistral":
        common.setdefault("sliding_window", None)
    return cls(**common)


def save_tiny_tokenizer(path: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, VOCAB):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(path)


def make_tiny_model(kind: str, path: str, seed: int = 0, **overrides: Any) -> Any:
    """Save a random tiny HF model (safetensors + tokenizer) to `path`; return it (float32)."""
    import transformers

    torch.manual_seed(seed)
    cfg = tiny_hf_config(kind, **overrides)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # Random init leaves norms at 1 and biases at 0: perturb them so they are really tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tiny_tokenizer(path)
    return model


def use_kernels(model: LlamaForCausalLM, name: str) -> None:
    """Switch the kernel backend and (re)pack the Linears for it, as the ModelRunner does."""
    set_kernel_backend(name)
    for module in model.modules():
        if isinstance(module, Linear):
            module.post_load()


def hf_logits(model: Any, tokens: list[int]) -> torch.Tensor:
    """float32 logits [len(tokens), vocab] of transformers on the full sequence."""
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float()


@dataclass
class Req:
    row: int
    tokens: list[int] = field(default_factory=list)  # tokens whose KV is in the pool
    slots: list[int] = field(default_factory=list)


class Driver:
    """Packs requests' new tokens into ForwardBatches against a ReqToTokenPool and a KVPool."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        backend: str = "torch",
        num_slots: int = 2048,
        max_reqs: int = 8,
        kv_dtype: Optional[torch.dtype] = None,  # None: the model's dtype
    ) -> None:
        cfg = model.config
        self.model = model
        self.req_pool = ReqToTokenPool(max_reqs, cfg.context_len)
        self.kv_pool = KVPool(
            num_slots, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, kv_dtype or cfg.dtype
        )
        self.backend = create_attention_backend(
            backend, self.req_pool.req_to_token, self.kv_pool, cfg.layer_sliding_windows
        )
        # Hand out slots in a scrambled order so req_to_token indirection really matters.
        gen = torch.Generator().manual_seed(1)
        self.free_slots = (torch.randperm(num_slots, generator=gen) + 1).tolist()

    def new_req(self) -> Req:
        row = self.req_pool.alloc()
        assert row is not None
        return Req(row)

    def step(self, work: list[tuple[Req, list[int]]], all_logits: bool = False) -> torch.Tensor:
        """Extend each request by its new tokens; float32 logits of each request's last token
        (of every new token with all_logits, as for input logprobs)."""
        ids: list[int] = []
        pos: list[int] = []
        locs: list[int] = []
        rows: list[int] = []
        seq: list[int] = []
        pre: list[int] = []
        ext: list[int] = []
        start: list[int] = []
        for req, new in work:
            n0 = len(req.tokens)
            slots = [self.free_slots.pop() for _ in new]
            self.req_pool.req_to_token[req.row, n0 : n0 + len(new)] = torch.tensor(slots)
            start.append(len(ids))
            ids += new
            pos += list(range(n0, n0 + len(new)))
            locs += slots
            rows.append(req.row)
            pre.append(n0)
            ext.append(len(new))
            seq.append(n0 + len(new))
            req.tokens += new
            req.slots += slots
        t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
        batch = ForwardBatch(
            input_ids=t(ids),
            positions=t(pos),
            out_cache_loc=t(locs),
            req_pool_indices=t(rows),
            seq_lens=t(seq),
            extend_prefix_lens=t(pre),
            extend_seq_lens=t(ext),
            extend_start_loc=t(start),
            is_decode=all(e == 1 for e in ext),
            seq_lens_list=seq,
            extend_seq_lens_list=ext,
            extend_prefix_lens_list=pre,
            logits_indices=torch.arange(len(ids)) if all_logits else None,
        )
        self.model.attn_backend = self.backend  # several drivers may share one model
        with torch.inference_mode():
            return self.model.compute_logits(self.model(batch))

    def free(self, req: Req) -> None:
        self.req_pool.free(req.row)
        self.free_slots += req.slots


def greedy(logits: torch.Tensor) -> list[int]:
    return logits.argmax(-1).tolist()


def random_prompt(n: int, seed: Optional[int] = None) -> list[int]:
    g = torch.Generator().manual_seed(seed if seed is not None else n)
    return torch.randint(3, VOCAB, (n,), generator=g).tolist()
