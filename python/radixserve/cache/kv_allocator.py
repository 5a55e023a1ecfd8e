"""KVAllocator: the token-to-KV-slot allocator (a thin typed wrapper of `_C.KVAllocator`).

The KV tensors have `num_slots` rows. Slot 0 (with page_size p > 1: the whole page 0, slots
0..p-1) is never handed out, so kernels can use it as a padding sink; `size = num_slots - p`
slots are usable. `alloc(n)` takes ceil(n / p) whole pages and returns all their slots (n
rounded up to whole pages). `free(slots)` frees every page containing one of the given slots;
a page that is already free, or a slot outside [p, num_slots), raises ValueError and frees
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch

import radixserve._C as _C

SlotsLike = Union[torch.Tensor, Sequence[int]]


class KVAllocator:
    """Hands out KV slot indices (int64 tensors) in pages of `page_size` slots."""

    def __init__(self, num_slots: int, page_size: int = 1) -> None:
        self._impl = _C.KVAllocator(int(num_slots), int(page_size))
        self.num_slots: int = int(num_slots)
        self.page_size: int = int(page_size)
        self.size: int = int(self._impl.size)

    def alloc(self, n: int) -> Optional[torch.Tensor]:
        """Slots of ceil(n / page_size) pages (int64), or None (nothing changed) if too few."""
        out: Optional[torch.Tensor] = self._impl.alloc(int(n))
        return out

    def free(self, slots: SlotsLike) -> None:
        """Give back the pages holding `slots` (a CPU int tensor or a sequence of ints)."""
        self._impl.free(slots)

    def available(self) -> int:
        """Number of free slots (free pages times page_size)."""
        return int(self._impl.available())

    def free_slots(self) -> torch.Tensor:
        """Every free slot, unordered (for accounting checks)."""
        out: torch.Tensor = self._impl.free_slots()
        return out

    def reset(self) -> None:
        """Mark every usable slot free again."""
        self._impl.reset()

    def __repr__(self) -> str:
        return (
            f"KVAllocator(num_slots={self.num_slots}, page_size={self.page_size}, "
            f"available={self.available()})"
        )
