"""A lean GGUF reader: the metadata and the tensors' views of the memory-mapped file.

gguf.GGUFReader turns every entry of the tokenizer arrays (49,152 tokens, ~48,900 merges for
the default model) into its own numpy views: 3-7 s of the scheduler's start-up and ~200 MB
resident until it is dropped. The model never needs those arrays (the tokenizer is built once
by transformers and cached, models/tokenizer.py), so this reader walks over them without
decoding them and reads everything else itself. Tensors come out as gguf.GGUFReader gives them
(same `name`, `tensor_type`, `shape` and `data` views), so gguf.quants.dequantize reads them.

Format (little-endian, versions 2 and 3): magic "GGUF", version u32, tensor count u64, metadata
count u64; metadata entries (key, value type u32, value); tensor infos (name, n_dims u32,
dims u64 x n_dims, type u32, offset u64); data from the next `general.alignment` boundary.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

# Arrays that are walked over, never decoded (nothing outside the tokenizer builder reads them).
SKIPPED_ARRAYS = frozenset(
    {
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.scores",
    }
)
_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_STRING, _ARRAY = 8, 9
# GGUF value type -> (struct format, size) of the scalar types.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}  # fmt: skip
# Tensor types numpy reads as they are (every other type is a byte view of its blocks).
_NUMPY_TYPES = {
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
    GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}  # fmt: skip


@dataclass
class GGUFTensor:
    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple[int, ...]  # GGUF order: the fastest-varying dimension first
    data: np.ndarray  # numpy order (reversed); block types: uint8 [..., bytes per row]


class GGUFFile:
    """`metadata` (key -> str / int / float / bool / list; SKIPPED_ARRAYS left out) and
    `tensors` (views of the mapped file, valid while this object lives)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._map = np.memmap(path, dtype=np.uint8, mode="r")
        self._buf = memoryview(self._map)  # type: ignore[arg-type]
        self._pos = 0
        try:
            self.metadata: dict[str, Any] = {}
            self.tensors: list[GGUFTensor] = []
            self._parse()
        except (struct.error, IndexError, UnicodeDecodeError, KeyError) as e:
            raise ValueError(f"{path} is not a readable GGUF file: {type(e).__name__}: {e}") from None
        finally:
            self._buf.release()

    # -- primitives -----------------------------------------------------------------------
    def _scalar(self, fmt: str, size: int) -> Any:
        (value,) = struct.unpack_from(fmt, self._buf, self._pos)
        self._pos += size
        return value

    def _u32(self) -> int:
        return int(self._scalar("<I", 4))

    def _u64(self) -> int:
        return int(self._scalar("<Q", 8))

    def _string(self) -> str:
        n = self._u64()
        start = self._pos
        self._pos += n
        if self._pos > len(self._buf):
            raise IndexError("string past the end of the file")
        return bytes(self._buf[start : self._pos]).decode("utf-8")

    def _value(self, vtype: int, decode: bool) -> Any:
        if vtype in _SCALARS:
            return self._scalar(*_SCALARS[vtype])
        if vtype == _STRING:
            return self._string()
        if vtype != _ARRAY:
            raise KeyError(f"unknown GGUF value type {vtype}")
        item_type, count = self._u32(), self._u64()
        if item_type in _SCALARS:  # one slice of the file for the whole array
            fmt, size = _SCALARS[item_type]
            start = self._pos
            self._pos += size * count
            if self._pos > len(self._buf):
                raise IndexError("array past the end of the file")
            if not decode:
                return None
            return np.frombuffer(self._buf[start : self._pos], dtype=np.dtype(fmt)).tolist()
        if item_type == _STRING and not decode:
            buf, pos = self._buf, self._pos
            for _ in range(count):  # only the lengths are read
                pos += 8 + int.from_bytes(buf[pos : pos + 8], "little")
            if pos > len(buf):
                raise IndexError("array past the end of the file")
            self._pos = pos
            return None
        return [self._value(item_type, decode) for _ in range(count)]

    # -- layout ---------------------------------------------------------------------------
    def _parse(self) -> None:
        if bytes(self._buf[:4]) != _MAGIC:
            raise ValueError(f"{self.path} is not a GGUF file (bad magic)")
        self._pos = 4
        version = self._u32()
        if version not in _VERSIONS:  # also what a big-endian file looks like
            raise ValueError(f"{self.path}: unsupported GGUF version {version} (2 or 3 only)")
        n_tensors, n_kv = self._u64(), self._u64()
        for _ in range(n_kv):
            key = self._string()
            value = self._value(self._u32(), decode=key not in SKIPPED_ARRAYS)
            if key not in SKIPPED_ARRAYS:
                self.metadata[key] = value
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = tuple(self._u64() for _ in range(self._u32()))
            infos.append((name, dims, GGMLQuantizationType(self._u32()), self._u64()))
        align = int(self.metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
        data_start = -(-self._pos // align) * align
        seen: set[str] = set()
        for name, dims, ttype, offset in infos:
            if name in seen:
                raise ValueError(f"{self.path}: duplicated tensor {name!r}")
            seen.add(name)
            self.tensors.append(self._tensor(name, dims, ttype, data_start + offset))

    def _tensor(
        self, name: str, dims: tuple[int, ...], ttype: GGMLQuantizationType, start: int
    ) -> GGUFTensor:
        n_elems = int(np.prod(dims, dtype=np.int64)) if dims else 1
        block, type_bytes = GGML_QUANT_SIZES[ttype]
        np_dims = tuple(reversed(dims))
        if ttype in _NUMPY_TYPES:
            dtype: Any = _NUMPY_TYPES[ttype]
            count = n_elems
        else:
            if np_dims[-1] % block:
                raise ValueError(f"tensor {name!r}: {np_dims[-1]} is not a multiple of {block}")
            dtype, count = np.uint8, n_elems // block * type_bytes
            np_dims = (*np_dims[:-1], np_dims[-1] // block * type_bytes)
        nbytes = count * np.dtype(dtype).itemsize
        if start + nbytes > self._map.shape[0]:
            raise ValueError(f"tensor {name!r} lies past the end of {self.path}")
        data = self._map[start : start + nbytes].view(dtype).reshape(np_dims)
        return GGUFTensor(name, ttype, dims, data)
