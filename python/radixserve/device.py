"""Where the model runs (`--device cpu|cuda`) and the host -> device split of one step.

The scheduler builds every index tensor of a step on the host (ForwardBatch, the new
req_to_token entries). `stage_batch` packs them into one int64 buffer, copies it to the device in
ONE transfer (pinned memory, non-blocking on CUDA) and hands back device views. Sampled tokens come
back through `HostCopy` (a non-blocking device -> host copy with an event), so the overlap
scheduler can launch the next step before it waits for this one's tokens.

The same code runs with a CPU "device": a ReqToTokenPool built with `mirror=True` keeps a second
table updated only through these transfers, which is how the CPU tests prove the split
(UNTESTED ON A GPU in this project: see benchmarks/results/gpu.md).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch

from radixserve.forward_batch import CascadeGroups, ForwardBatch
from radixserve.layers.sampling_info import SampleOutput

logger = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "cuda")


def cuda_kernels_built() -> bool:
    """radixserve._C was compiled with its CUDA kernels (`_C.has_cuda`)."""
    try:
        from radixserve import _C
    except ImportError:
        return False
    return bool(getattr(_C, "has_cuda", False))


def resolve_device(name: Optional[str]) -> str:
    """'auto' (or None): cuda when torch sees a GPU and _C has CUDA kernels, else cpu."""
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() and cuda_kernels_built() else "cpu"
    if name not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda needs a CUDA-enabled torch and a visible NVIDIA GPU "
            f"(torch {torch.__version__}, cuda {torch.version.cuda})"
        )
    return name


# ForwardBatch index fields copied to the device (all int64 on the host).
_BATCH_FIELDS = (
    "input_ids",
    "positions",
    "out_cache_loc",
    "req_pool_indices",
    "seq_lens",
    "extend_prefix_lens",
    "extend_seq_lens",
    "extend_start_loc",
)
_OPTIONAL_FIELDS = ("logits_indices", "token_type_ids")


@dataclass
class TableUpdates:
    """New req_to_token entries: flat indices (row * max_context + col) and their slots."""

    flat_index: torch.Tensor  # int64 [n]
    slots: torch.Tensor  # int64 [n]


def stage_batch(
    batch: ForwardBatch, device: torch.device, updates: Optional[TableUpdates] = None
) -> tuple[ForwardBatch, Optional[TableUpdates]]:
    """The batch (and table updates) on `device`, through one host -> device copy."""
    parts: list[tuple[str, torch.Tensor]] = [(f, getattr(batch, f)) for f in _BATCH_FIELDS]
    parts += [(f, getattr(batch, f)) for f in _OPTIONAL_FIELDS if getattr(batch, f) is not None]
    if batch.cascade is not None:
        parts += [("cascade.group_ids", batch.cascade.group_ids)]
        parts += [("cascade.prefix_lens", batch.cascade.prefix_lens)]
    if updates is not None:
        parts += [("updates.flat_index", updates.flat_index), ("updates.slots", updates.slots)]
    # Tensors already on the device (the overlap scheduler's input ids: the previous step's
    # sampled tokens) stay where they are; everything else travels in the one buffer.
    resident = {n: t for n, t in parts if device.type != "cpu" and t.device == device}
    parts = [(n, t) for n, t in parts if n not in resident]
    flat = [t.reshape(-1).to(torch.int64) for _, t in parts]
    sizes = [t.numel() for t in flat]
    host = torch.cat(flat) if flat else torch.empty(0, dtype=torch.int64)
    if device.type == "cuda":
        host = host.pin_memory()
    moved = host.to(device, non_blocking=True) if device.type != "cpu" else host.clone()
    views = dict(zip((n for n, _ in parts), moved.split(sizes), strict=True))  # type: ignore[no-untyped-call]
    views.update(resident)
    fields: dict[str, Any] = {f: views[f] for f in _BATCH_FIELDS}
    fields.update({f: views[f] for f in _OPTIONAL_FIELDS if f in views})
    if batch.cascade is not None:
        fields["cascade"] = CascadeGroups(views["cascade.group_ids"], views["cascade.prefix_lens"])
    staged = dataclasses.replace(batch, **fields)
    moved_updates = (
        TableUpdates(views["updates.flat_index"], views["updates.slots"])
        if updates is not None
        else None
    )
    return staged, moved_updates


def info_to_device(info: Any, device: torch.device) -> Any:
    """A SamplingBatchInfo whose tensors live on `device` (the logits' device)."""
    if device.type == "cpu":
        return info
    fields = {
        f.name: getattr(info, f.name).to(device, non_blocking=True)
        for f in dataclasses.fields(info)
        if isinstance(getattr(info, f.name), torch.Tensor)
    }
    return dataclasses.replace(info, **fields)


class HostCopy:
    """A SampleOutput copied to the host without blocking; `wait()` returns it when it is there.

    On CUDA the copy and an event are queued on the current stream right after sampling, so a
    later `wait()` blocks only until THIS step's tokens arrived, not until work queued after it
    (the overlap scheduler's next forward) finishes.
    """

    def __init__(self, out: SampleOutput) -> None:
        self._event: Optional[Any] = None
        if out.next_token_ids.device.type == "cpu":
            self._host = out
            return
        fields = {}
        for f in dataclasses.fields(out):
            t = getattr(out, f.name)
            if isinstance(t, torch.Tensor):
                pinned = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                fields[f.name] = pinned.copy_(t, non_blocking=True)
        self._host = dataclasses.replace(out, **fields)
        self._event = torch.cuda.Event()  # type: ignore[no-untyped-call]
        self._event.record()

    def wait(self) -> SampleOutput:
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host
