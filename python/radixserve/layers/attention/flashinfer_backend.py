"""GPU attention: FlashInfer's paged kernels where FlashInfer is installed, else radixserve's own
CUDA kernels (`_C.*_cuda`, csrc/cuda/attention.cu).

UNTESTED ON HARDWARE: this project has no GPU. The KV pool is read with page size 1: the cache
`[num_slots, Hkv, D]` is FlashInfer's NHD layout `[num_pages, page_size=1, Hkv, D]`, and each
request's page list is its req_to_token row. FlashInfer is planned once per forward batch (and
sliding window) and the plan is reused by every layer. FlashInfer has no float32 KV path, so a
float32 pool always uses the CUDA kernels.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

import torch

from radixserve.cache.memory_pool import KVPool
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.attention.base import AttentionBackend

WORKSPACE_BYTES = 128 << 20  # FlashInfer's scratch for split-KV partial results


def load_flashinfer() -> Optional[Any]:
    """The flashinfer module, or None when it is not installed (or fails to load)."""
    try:
        return importlib.import_module("flashinfer")
    except Exception:  # an installed but broken build (wrong torch/CUDA) counts as absent
        return None


def cuda_ops() -> Optional[Any]:
    """radixserve._C when it was built with CUDA, else None."""
    try:
        from radixserve import _C
    except ImportError:
        return None
    return _C if getattr(_C, "has_cuda", False) else None


def page_table(
    req_to_token: torch.Tensor, batch: ForwardBatch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashInfer's CSR page table for page size 1: (qo_indptr, kv_indptr, kv_indices), int32 on
    req_to_token's device. Request b's pages are its slots req_to_token[row_b, :seq_len_b]; its
    queries are rows qo_indptr[b]:qo_indptr[b + 1] (tokens packed request after request)."""
    device = req_to_token.device
    seq_lens = batch.seq_lens.to(device)
    kv_indptr = torch.zeros(batch.batch_size + 1, dtype=torch.int32, device=device)
    kv_indptr[1:] = torch.cumsum(seq_lens, 0)
    qo_indptr = torch.zeros_like(kv_indptr)
    qo_indptr[1:] = torch.cumsum(batch.extend_seq_lens.to(device), 0)
    # The host copy of seq_lens, when present, spares a device sync for the output size.
    total = sum(batch.seq_lens_list) if batch.seq_lens_list is not None else None
    rows = torch.repeat_interleave(batch.req_pool_indices.to(device), seq_lens, output_size=total)
    starts = torch.repeat_interleave(kv_indptr[:-1].long(), seq_lens, output_size=total)
    cols = torch.arange(rows.shape[0], device=device) - starts  # position within the request
    return qo_indptr, kv_indptr, req_to_token[rows, cols].to(torch.int32)


class FlashInferBackend(AttentionBackend):
    def __init__(
        self,
        req_to_token: torch.Tensor,
        kv_pool: KVPool,
        sliding_windows: Optional[list[int]] = None,
    ) -> None:
        super().__init__(req_to_token, kv_pool, sliding_windows)
        self.flashinfer = load_flashinfer()
        self.ops = cuda_ops()
        if self.flashinfer is None and self.ops is None:
            raise RuntimeError(
                "GPU attention needs FlashInfer (pip install flashinfer-python) or radixserve._C "
                "built with CUDA (a CUDA torch and nvcc at build time); neither is available"
            )
        self._workspace: Optional[torch.Tensor] = None
        self._batch: Optional[ForwardBatch] = None  # the batch the plans below belong to
        self._page_table: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
        self._wrappers: dict[int, Any] = {}  # sliding window -> planned FlashInfer wrapper

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer_id: int, batch: ForwardBatch
    ) -> torch.Tensor:
        self.check(q, k, v, batch)
        k_cache, v_cache = self.kv_pool.get_kv(layer_id)
        if not k_cache.is_cuda or q.device != k_cache.device:
            raise ValueError(
                f"GPU attention needs q and the KV pool on one CUDA device, got q on {q.device} "
                f"and the pool on {k_cache.device}"
            )
        dtype = k_cache.dtype
        q, k, v = q.to(dtype).contiguous(), k.to(dtype).contiguous(), v.to(dtype).contiguous()
        if self.ops is not None:
            self.ops.store_kv_cuda(k_cache, v_cache, batch.out_cache_loc, k, v)
        else:
            k_cache[batch.out_cache_loc] = k
            v_cache[batch.out_cache_loc] = v
        window = self.sliding_windows[layer_id]
        if self.flashinfer is not None and dtype in (torch.float16, torch.bfloat16):
            wrapper = self._planned(batch, window, q)
            out: torch.Tensor = wrapper.run(q, (k_cache.unsqueeze(1), v_cache.unsqueeze(1)))
            return out
        return self._own_kernels(q, k_cache, v_cache, window, batch)

    def _own_kernels(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        window: int,
        batch: ForwardBatch,
    ) -> torch.Tensor:
        if self.ops is None:
            raise RuntimeError(
                f"FlashInfer has no {k_cache.dtype} KV cache path and radixserve._C lacks CUDA"
            )
        out = torch.empty_like(q)
        scale = self.scale(q.shape[2])
        common = (k_cache, v_cache, self.req_to_token, batch.req_pool_indices, batch.seq_lens)
        if batch.is_decode:
            self.ops.decode_attention_cuda(out, q, *common, scale, window)
        else:
            self.ops.extend_attention_cuda(
                out, q, *common, batch.extend_seq_lens, batch.extend_start_loc, scale, window
            )
        return out

    def _planned(self, batch: ForwardBatch, window: int, q: torch.Tensor) -> Any:
        fi = self.flashinfer
        assert fi is not None
        if batch is not self._batch:
            self._batch, self._wrappers = batch, {}
            self._page_table = page_table(self.req_to_token, batch)
        if window in self._wrappers:
            return self._wrappers[window]
        if self._workspace is None:
            self._workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=q.device)
        assert self._page_table is not None
        qo_indptr, kv_indptr, kv_indices = self._page_table
        last_page_len = torch.ones(batch.batch_size, dtype=torch.int32, device=q.device)
        hq, hkv, d = q.shape[1], self.kv_pool.num_kv_heads, self.kv_pool.head_dim
        # Our window counts the query's own position; FlashInfer's window_left does not.
        window_left = window - 1 if window > 0 else -1
        dtypes = dict(q_data_type=q.dtype, kv_data_type=q.dtype)
        if batch.is_decode:
            wrapper = fi.BatchDecodeWithPagedKVCacheWrapper(self._workspace, "NHD")
            wrapper.plan(
                kv_indptr,
                kv_indices,
                last_page_len,
                hq,
                hkv,
                d,
                1,  # page size
                window_left=window_left,
                sm_scale=self.scale(d),
                **dtypes,
            )
        else:
            wrapper = fi.BatchPrefillWithPagedKVCacheWrapper(self._workspace, "NHD")
            wrapper.plan(
                qo_indptr,
                kv_indptr,
                kv_indices,
                last_page_len,
                hq,
                hkv,
                d,
                1,  # page size
                causal=True,
                window_left=window_left,
                sm_scale=self.scale(d),
                **dtypes,
            )
        self._wrappers[window] = wrapper
        return wrapper
