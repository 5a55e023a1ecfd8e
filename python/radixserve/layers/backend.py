"""Which implementation the layers use: the native kernels (default) or plain PyTorch.

The native kernels exist twice in radixserve._C: `<name>` for CPU tensors and `<name>_cuda` for
CUDA tensors (builds with CUDA only). `device_op` picks by the tensor's device, so a layer calls
one op name and runs on either.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional

import torch

_state = {"native": True}
_ops: Optional[ModuleType] = None


def set_kernel_backend(name: str) -> None:
    if name not in ("native", "torch"):
        raise ValueError(f"kernel backend must be 'native' or 'torch', got {name!r}")
    _state["native"] = name == "native"


def use_native() -> bool:
    return _state["native"]


def native_ops() -> ModuleType:
    """The compiled module; imported lazily so pure-PyTorch code paths never need it."""
    global _ops
    if _ops is None:
        from radixserve import _C

        _ops = _C
    return _ops


def device_op(name: str, like: torch.Tensor) -> Any:
    """_C.<name> for CPU tensors, _C.<name>_cuda for CUDA tensors."""
    ops = native_ops()
    if like.device.type == "cpu":
        return getattr(ops, name)
    op = getattr(ops, f"{name}_cuda", None) if like.is_cuda else None
    if op is None:
        raise RuntimeError(
            f"radixserve._C has no {name} kernel for {like.device} tensors (build it with CUDA, "
            "or use --kernel-backend torch)"
        )
    return op
