"""models/gguf_file.py against gguf's own GGUFReader: same metadata, same tensor views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from radixserve.models.default_model import default_model_path
from radixserve.models.gguf_file import SKIPPED_ARRAYS, GGUFFile


def assert_same_as_gguf_reader(path: str) -> GGUFFile:
    ours, ref = GGUFFile(path), GGUFReader(path)
    expected = {k: f.contents() for k, f in ref.fields.items()
                if not k.startswith("GGUF.") and k not in SKIPPED_ARRAYS}  # fmt: skip
    assert ours.metadata == expected
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for a, b in zip(ours.tensors, ref.tensors, strict=True):
        assert a.tensor_type == b.tensor_type, a.name
        assert a.shape == tuple(int(d) for d in b.shape), a.name
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, a.name
        np.testing.assert_array_equal(a.data, b.data)
    return ours


def test_default_model_matches_gguf_reader() -> None:
    f = assert_same_as_gguf_reader(default_model_path())
    assert f.metadata["general.architecture"] == "llama"
    assert "tokenizer.ggml.tokens" not in f.metadata and "tokenizer.chat_template" in f.metadata
    assert {t.tensor_type.name for t in f.tensors} == {"Q4_1", "Q8_0", "F32"}


def write_sample(path: Path) -> None:
    w = GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("sample.flag", True)
    w.add_string("sample.text", "héllo")
    w.add_array("sample.ints", [1, -2, 3])
    w.add_array("sample.names", ["a", "bc"])
    w.add_array("tokenizer.ggml.tokens", ["x"] * 1000)  # walked over, not decoded
    w.add_array("tokenizer.ggml.scores", [0.5] * 1000)
    rng = np.random.default_rng(0)
    w.add_tensor("a.weight", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("b.weight", rng.standard_normal((7,)).astype(np.float16))
    w.add_tensor("c.weight", rng.integers(-9, 9, (2, 4)).astype(np.int32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_written_file_matches_gguf_reader(tmp_path: Path) -> None:
    path = tmp_path / "sample.gguf"
    write_sample(path)
    f = assert_same_as_gguf_reader(str(path))
    assert f.metadata["sample.names"] == ["a", "bc"] and f.metadata["sample.ints"] == [1, -2, 3]
    assert f.metadata["sample.text"] == "héllo" and f.metadata["sample.flag"] is True


def test_bad_files_raise_value_error(tmp_path: Path) -> None:
    path = tmp_path / "sample.gguf"
    write_sample(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + data[4:])
    with pytest.raises(ValueError, match="bad magic"):
        GGUFFile(str(bad))
    bad.write_bytes(data[:4] + (7).to_bytes(4, "little") + data[8:])
    with pytest.raises(ValueError, match="version 7"):
        GGUFFile(str(bad))
    for cut in (40, 200, len(data) - 8):  # inside the metadata, the arrays, the tensor data
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            GGUFFile(str(bad))
