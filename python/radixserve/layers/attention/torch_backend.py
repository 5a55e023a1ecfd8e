"""Plain-PyTorch attention: the reference the native kernels are checked against.

Each request's keys are gathered through its req_to_token row; the math runs in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention.base import AttentionBackend


class TorchBackend(AttentionBackend):
    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer_id: int, batch: ForwardBatch
    ) -> torch.Tensor:
        self.check(q, k, v, batch)
        self.kv_pool.set_kv(layer_id, batch.out_cache_loc, k, v)
        k_cache, v_cache = self.kv_pool.get_kv(layer_id)
        window = self.sliding_windows[layer_id]
        out = torch.empty_like(q)
        seq_lens = batch.seq_lens_list or batch.seq_lens.tolist()
        ext_lens = batch.extend_seq_lens_list or batch.extend_seq_lens.tolist()
        starts = batch.extend_start_loc.tolist()
        rows = batch.req_pool_indices.tolist()
        scale = self.scale(q.shape[2])
        for row, seq_len, ext, start in zip(rows, seq_lens, ext_lens, starts, strict=True):
            if ext == 0:
                continue
            slots = self.req_to_token[row, :seq_len].long()
            keys = k_cache[slots].float().transpose(0, 1)  # [Hkv, S, D]
            vals = v_cache[slots].float().transpose(0, 1)
            qi = q[start : start + ext].float().transpose(0, 1)  # [Hq, E, D]
            q_pos = torch.arange(seq_len - ext, seq_len, device=q.device).unsqueeze(1)
            k_pos = torch.arange(seq_len, device=q.device).unsqueeze(0)
            mask = k_pos <= q_pos
            if window > 0:
                mask &= k_pos > q_pos - window
            o = F.scaled_dot_product_attention(
                qi, keys, vals, attn_mask=mask, scale=scale, enable_gqa=True
            )
            out[start : start + ext] = o.transpose(0, 1).to(q.dtype)
        return out
