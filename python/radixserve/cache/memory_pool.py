"""Memory pools: the request -> KV-slot table and the per-layer K/V tensors it indexes."""

from __future__ import annotations

from typing import Optional, Union

import torch

from radixserve.device import TableUpdates

Device = Union[str, torch.device]


class ReqToTokenPool:
    """`req_to_token[row, pos]` = KV slot of token `pos` of the request that owns `row`.

    `req_to_token` is the host table the scheduler writes (through `write`). The attention
    kernels read `device_table`: the same tensor on the CPU; on another device (or on the CPU with
    `mirror=True`, which is how the tests check the split) a copy that `take_updates` brings up to
    date once per step, in the step's one host -> device transfer.
    """

    def __init__(
        self, size: int, max_context_len: int, device: Device = "cpu", mirror: bool = False
    ) -> None:
        if size < 1 or max_context_len < 1:
            raise ValueError(
                f"ReqToTokenPool needs size >= 1 and max_context_len >= 1, got "
                f"{size}, {max_context_len}"
            )
        self.size = size
        self.max_context_len = max_context_len
        self.req_to_token = torch.zeros(size, max_context_len, dtype=torch.int32)
        self.device = torch.device(device)
        separate = mirror or self.device.type != "cpu"
        self.device_table = (
            torch.zeros(size, max_context_len, dtype=torch.int32, device=self.device)
            if separate
            else self.req_to_token
        )
        # (row, start, length) spans written since the last take_updates; None: one table.
        self._dirty: Optional[list[tuple[int, int, int]]] = [] if separate else None
        # Pop from the end: low rows are handed out first.
        self._free: list[int] = list(range(size - 1, -1, -1))
        self._in_use = [False] * size

    def alloc(self) -> Optional[int]:
        if not self._free:
            return None
        idx = self._free.pop()
        self._in_use[idx] = True
        return idx

    def free(self, idx: int) -> None:
        if not 0 <= idx < self.size:
            raise ValueError(f"row {idx} is outside the pool (size {self.size})")
        if not self._in_use[idx]:
            raise ValueError(f"row {idx} is not allocated (double free?)")
        self._in_use[idx] = False
        self._free.append(idx)

    def available(self) -> int:
        return len(self._free)

    @property
    def mirrored(self) -> bool:
        return self._dirty is not None

    def write(self, row: int, start: int, slots: torch.Tensor) -> None:
        """req_to_token[row, start : start + len(slots)] = slots (host), noted for the device."""
        n = int(slots.numel())
        if n == 1:  # a decode's one slot: a scalar store is a fraction of a slice copy's cost
            self.req_to_token[row, start] = int(slots.reshape(()))
        else:
            self.req_to_token[row, start : start + n] = slots.to(torch.int32)
        if self._dirty is not None and n:
            self._dirty.append((row, start, n))

    def take_updates(self) -> Optional[TableUpdates]:
        """The entries written since the last call (current host values), or None."""
        if not self._dirty:
            return None
        spans, self._dirty = self._dirty, []
        ctx = self.max_context_len
        flat = torch.cat([torch.arange(r * ctx + s, r * ctx + s + n) for r, s, n in spans])
        slots = self.req_to_token.view(-1)[flat].to(torch.int64)
        return TableUpdates(flat_index=flat, slots=slots)

    def apply_updates(self, updates: TableUpdates) -> None:
        """Write staged updates (already on the device) into device_table."""
        self.device_table.view(-1)[updates.flat_index] = updates.slots.to(torch.int32)

    def clear(self) -> None:
        self._free = list(range(self.size - 1, -1, -1))
        self._in_use = [False] * self.size


def resolve_kv_cache_dtype(
    name: str, model_dtype: torch.dtype, device: Device, auto_bf16: bool = False
) -> torch.dtype:
    """The KV pool dtype of `--kv-cache-dtype name` under a model computing in model_dtype.

    auto is the model's dtype, or bfloat16 when auto_bf16 (a GGUF kept quantized, float32
    activations, on the CPU: half the KV memory; on the default model the same greedy tokens
    on the fidelity prompts and no slower, benchmarks/results/memory_startup.md). A bfloat16 pool under a float32 model is read by the CPU kernels
    as fp32 (half the KV bytes); the CUDA kernels and a float32 pool under a bfloat16 model
    (twice the bytes, no gain) are not supported.
    """
    if name == "auto":
        on_cpu = torch.device(device).type == "cpu"
        if auto_bf16 and on_cpu and model_dtype == torch.float32:
            return torch.bfloat16
        return model_dtype
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name not in choices:
        raise ValueError(f"--kv-cache-dtype must be one of auto, float32, bfloat16; got {name!r}")
    dtype = choices[name]
    if dtype == model_dtype:
        return dtype
    if model_dtype != torch.float32:
        raise ValueError(
            f"--kv-cache-dtype {name} under a {str(model_dtype).replace('torch.', '')} model is "
            "not supported: use auto (the model's dtype)"
        )
    if torch.device(device).type != "cpu":
        raise ValueError(
            f"--kv-cache-dtype {name} with a float32 model runs on the CPU only (the CUDA "
            "kernels need the model's dtype): use --kv-cache-dtype auto on cuda"
        )
    return dtype


class KVPool:
    """Per-layer K and V tensors `[num_slots + 1, num_kv_heads, head_dim]`.

    Slot 0 is a padding sink (the allocator never hands it out; padded tokens may write there),
    so the usable slots are 1..num_slots, matching KVAllocator(num_slots).
    """

    def __init__(
        self,
        num_slots: int,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: Device = "cpu",
    ) -> None:
        if min(num_slots, num_layers, num_kv_heads, head_dim) < 1:
            raise ValueError("KVPool dimensions must all be >= 1")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"KVPool dtype must be float32 or bfloat16, got {dtype}")
        self.num_slots = num_slots
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        shape = (num_slots + 1, num_kv_heads, head_dim)
        # empty: pages are only committed when written; slot 0 is zeroed so the sink is finite.
        self.device = torch.device(device)
        self.k_buffers = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v_buffers = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        for buf in self.k_buffers + self.v_buffers:
            buf[0].zero_()

    def get_kv(self, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k_buffers[layer_id], self.v_buffers[layer_id]

    def set_kv(self, layer_id: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Plain-PyTorch store of k/v [T, Hkv, D] at slots loc [T]."""
        self.k_buffers[layer_id][loc] = k.to(self.dtype)
        self.v_buffers[layer_id][loc] = v.to(self.dtype)

    @property
    def size_bytes(self) -> int:
        per = self.k_buffers[0].numel() * self.k_buffers[0].element_size()
        return 2 * self.num_layers * per
