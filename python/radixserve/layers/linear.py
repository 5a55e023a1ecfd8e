"""Linear layers. On the native backend the weight is packed once after loading and the product
runs in radixserve._C (decode shapes are memory-bound: the packed layout streams the weight).

GGUF weights in Q4_0, Q4_1 or Q8_0 can stay quantized (`QuantizedWeight`, loaded with
`Linear.load_quantized`): post_load packs them for `_C.quant_linear` and drops the plain weight,
so the layer holds one copy of its weight, in the file's format.

An fp32 layer can instead be rounded to integers (`weight_format = "int16"`, set before
post_load; the BERT encoders do it by default): `_C.int16_linear` rounds the weight once per
output channel and every input per row, and sums the products exactly in int32
(csrc/cpu/gemm_int16_kernels.h). On AVX2 that does twice the multiply-adds per instruction of
an fp32 FMA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from radixserve.layers.backend import native_ops, use_native

# What the native kernel computes in: fp32 x fp32 weights, bf16 x bf16 (fp32 accumulation).
NATIVE_DTYPES = (torch.float32, torch.bfloat16)
# fp32 products of at least this many rows go to torch (oneDNN/MKL sgemm), which measured
# 10-30% faster there except on the (weight-streaming) LM head; bf16 stays native at every M
# (torch's bf16 matmul is 5-8x slower on this AVX2 machine). benchmarks/results/linear.md.
TORCH_FP32_MIN_ROWS = 16
TORCH_FP32_MAX_N = 8192
# Integer widths of the int16 format: 12-bit weights (per output channel) and 14-bit activations
# (per row): all-MiniLM-L6-v2's minimum cosine to sentence-transformers was 0.999991 on 14
# sentences (11 + 11 bits: 0.99985, 12 + 12: 0.99996; the activations' bits dominate). The int32
# sums then cover K blocks of 128, which cost no measurable speed against blocks of 512.
# benchmarks/results/embeddings.md ("int16 encoder linears").
INT16_WEIGHT_BITS = 12
INT16_ACT_BITS = 14
WEIGHT_FORMATS = ("float32", "int16")
# GGUF block types the native quantized kernels read (gguf's GGMLQuantizationType names).
QUANT_TYPES = ("Q4_0", "Q4_1", "Q8_0")
# Output columns per work item of the native kernels: the ends of a column range fall on it.
COLUMN_BLOCK = 32


@dataclass
class QuantizedWeight:
    """The GGUF data of a [rows, cols] weight in one of QUANT_TYPES, blocks of 32 along cols."""

    qtype: str  # "Q4_0" | "Q4_1" | "Q8_0"
    data: torch.Tensor  # uint8 [rows, cols / 32 * block bytes], GGUF's own block layout
    shape: tuple[int, int]

    def dequantize(self) -> torch.Tensor:
        """float32 [rows, cols]: what gguf's dequantize gives."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        qt = GGMLQuantizationType[self.qtype]
        return torch.from_numpy(dequantize(self.data.numpy(), qt).reshape(self.shape).copy())

    def pack(self) -> torch.Tensor:
        """The native packed form (radixserve._C.quant_linear's weight)."""
        return native_ops().pack_quant_weight(self.data, self.qtype.lower(), self.shape[1])


class Linear(nn.Module):
    """y = x @ W^T + b with W: [out_features, in_features]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias: Optional[nn.Parameter] = (
            nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        )
        self.packed: Optional[torch.Tensor] = None
        # Quantized rows loaded so far: (first row, weight); packed into quant_packed.
        self.quant_parts: list[tuple[int, QuantizedWeight]] = []
        self.quant_packed: Optional[torch.Tensor] = None
        # "int16": post_load packs an fp32 weight for _C.int16_linear (native CPU backend).
        self.weight_format = "float32"
        self.int16_packed: Optional[torch.Tensor] = None

    def load_quantized(self, start: int, weight: QuantizedWeight) -> None:
        """Rows [start, start + rows) of W, kept in their GGUF format until post_load."""
        rows, cols = weight.shape
        if cols != self.in_features or start < 0 or start + rows > self.out_features:
            raise ValueError(
                f"quantized weight {weight.shape} at row {start} does not fit "
                f"[{self.out_features}, {self.in_features}]"
            )
        self.quant_parts.append((start, weight))

    def post_load(self) -> None:
        """Called once after the weights are loaded (and cast): packs W for the native kernel.

        Quantized rows (load_quantized) that cover W in one type are packed as they are and the
        plain weight is dropped; mixed types or another backend dequantise them into W first.
        Otherwise the unpacked weight stays: it may be shared (tied embeddings) and serves the
        torch backend. Other dtypes (e.g. float16) or devices keep using torch.
        """
        if self.quant_parts:
            parts, self.quant_parts = sorted(self.quant_parts, key=lambda p: p[0]), []
            covered = sum(w.shape[0] for _, w in parts) == self.out_features and all(
                a[0] + a[1].shape[0] == b[0] for a, b in zip(parts[:-1], parts[1:], strict=True)
            )
            covered = covered and parts[0][0] == 0
            # Mixed types (or rows the loader dequantised) leave W in float: one packing each.
            if covered and use_native() and len({w.qtype for _, w in parts}) == 1:
                raw = torch.cat([w.data for _, w in parts]) if len(parts) > 1 else parts[0][1].data
                merged = QuantizedWeight(
                    parts[0][1].qtype, raw, (self.out_features, self.in_features)
                )
                self.quant_packed = merged.pack()
                self.packed = None
                # One copy: the plain weight (never filled) becomes an empty placeholder.
                self.weight = nn.Parameter(
                    torch.empty(0, self.in_features, dtype=self.weight.dtype), requires_grad=False
                )
                return
            for start, part in parts:
                self.weight.data[start : start + part.shape[0]] = part.dequantize()
        elif self.quant_packed is not None:  # shared with a quantized embedding
            return
        w = self.weight.data
        native = use_native() and w.device.type == "cpu" and w.dtype in NATIVE_DTYPES
        self.int16_packed = None
        if native and self.weight_format == "int16" and w.dtype == torch.float32:
            # The fp32 weight stays for the torch backend (as the packed fp32 case below).
            self.int16_packed = native_ops().pack_int16_weight(
                w, INT16_WEIGHT_BITS, INT16_ACT_BITS
            )
            self.packed = None
            return
        self.packed = native_ops().pack_linear_weight(w) if native else None

    def set_quant_packed(self, packed: torch.Tensor) -> None:
        """Share an already packed quantized weight (a tied embedding's) as this layer's W."""
        qtype, n, k = native_ops().quant_weight_info(packed)
        if (n, k) != (self.out_features, self.in_features):
            raise ValueError(f"packed {qtype} weight [{n}, {k}] does not fit {self}")
        self.quant_packed, self.packed = packed, None
        self.weight = nn.Parameter(
            torch.empty(0, self.in_features, dtype=self.weight.dtype), requires_grad=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant_packed is not None:
            shape = x.shape
            if use_native():
                x2 = x.reshape(-1, shape[-1]).contiguous()
                out = native_ops().quant_linear(x2, self.quant_packed, self.bias)
            else:  # plain PyTorch on the dequantised weight (slow; for comparisons)
                w = native_ops().dequantize_quant_weight(self.quant_packed).to(x.dtype)
                out = F.linear(x.reshape(-1, shape[-1]), w, self.bias)
            return out.view(*shape[:-1], self.out_features)
        if self.int16_packed is not None and use_native() and x.dtype == torch.float32:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).contiguous()
            out = native_ops().int16_linear(x2, self.int16_packed, self.bias)
            return out.view(*shape[:-1], self.out_features)
        if self.packed is not None and use_native() and not self._torch_is_faster(x):
            shape = x.shape
            out = native_ops().linear(x.reshape(-1, shape[-1]).contiguous(), self.packed, self.bias)
            return out.view(*shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)

    def can_split_columns(self, x: torch.Tensor) -> bool:
        """Can forward_columns compute forward(x) in column ranges, each with the whole product's
        bits? On the native kernels: a quantized weight with float32 x, or a packed weight."""
        if not use_native() or x.dim() != 2:
            return False
        if self.quant_packed is not None:
            return x.dtype == torch.float32
        return self.packed is not None and not self._torch_is_faster(x)

    def forward_columns(
        self, x: torch.Tensor, out: Optional[torch.Tensor], begin: int, end: int
    ) -> torch.Tensor:
        """Output columns [begin, end) of forward(x), written into out ([rows, out_features],
        x's dtype; allocated when None, the rest left unset) and returned. Needs
        can_split_columns(x); begin and end are multiples of COLUMN_BLOCK (end may be
        out_features). Each slice reads only its rows of W, once for all rows of x."""
        if out is None:
            out = torch.empty(x.shape[0], self.out_features, dtype=x.dtype)
        x = x.contiguous()
        if self.quant_packed is not None:
            native_ops().quant_linear(x, self.quant_packed, self.bias, out, begin, end)
        else:
            native_ops().linear(x, self.packed, self.bias, out, begin, end)
        return out

    def _torch_is_faster(self, x: torch.Tensor) -> bool:
        rows = x.numel() // max(self.in_features, 1)
        return (
            x.dtype == torch.float32
            and rows >= TORCH_FP32_MIN_ROWS
            and self.out_features <= TORCH_FP32_MAX_N
        )

    def extra_repr(self) -> str:
        packed = self.packed is not None
        quant = (
            native_ops().quant_weight_info(self.quant_packed)[0]
            if self.quant_packed is not None
            else None
        )
        return (
            f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}, "
            f"{packed=}, {quant=}, int16={self.int16_packed is not None}"
        )
