"""Which implementation the layers use: the native kernels (default on CPU) or plain PyTorch."""

from __future__ import annotations

_state = {"native": True}


def set_kernel_backend(name: str) -> None:
    if name not in ("native", "torch"):
        raise ValueError(f"kernel backend must be 'native' or 'torch', got {name!r}")
    _state["native"] = name == "native"


def use_native() -> bool:
    return _state["native"]


def native_ops():  # type: ignore[no-untyped-def]
    """The compiled module; imported lazily so pure-PyTorch code paths never need it."""
    from radixserve import _C

    return _C
