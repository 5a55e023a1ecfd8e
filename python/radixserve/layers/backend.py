"""Which implementation the layers use: the native kernels (default on CPU) or plain PyTorch."""

from __future__ import annotations

from types import ModuleType
from typing import Optional

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
