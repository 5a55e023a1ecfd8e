"""The native EncoderStack (BertEncoder's whole forward in one call) against the per-op modules,
its reference: random BERT encoders of several shapes, packed batches of many lengths, with and
without token types, on one thread (serial) and split, on every ISA build this CPU has. Both run
the same kernels on the same values, so the hidden states must be equal bit for bit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from isa_builds import isa_fixture
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.backend import set_kernel_backend
from radixserve.layers.linear import Linear
from radixserve.models.bert import BertEncoder
from radixserve.models.config import ModelConfig

_C = pytest.importorskip("radixserve._C")
if not hasattr(_C, "EncoderStack"):
    pytest.skip("radixserve._C was built without the EncoderStack", allow_module_level=True)

isa = isa_fixture(_C.set_isa)


@pytest.fixture(autouse=True)
def two_threads() -> Iterator[None]:
    """Two intra-op threads, whatever an earlier test left (an in-process ModelRunner sets its
    own count): the stack's one-region path needs more than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def random_encoder(hidden: int, heads: int, inter: int, layers: int, act: str,
                   linear_format: str = "int16", seed: int = 0,
                   context_len: int = 64) -> BertEncoder:  # fmt: skip
    cfg = ModelConfig(path="", architectures=["BertModel"], model_type="bert", vocab_size=97,
                      hidden_size=hidden, intermediate_size=inter, num_layers=layers,
                      num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                      context_len=context_len, is_generation=False, is_encoder=True, type_vocab_size=2,
                      hidden_act=act, layer_norm_eps=1e-12, encoder_linear_format=linear_format)  # fmt: skip
    enc = BertEncoder(cfg)
    gen = torch.Generator().manual_seed(seed)
    for p in enc.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    for m in enc.modules():
        if isinstance(m, Linear):
            m.post_load()
    return enc


def packed(lens: list[int], with_types: bool, seed: int) -> ForwardBatch:
    gen = torch.Generator().manual_seed(seed)
    t = sum(lens)
    z = torch.zeros(len(lens), dtype=torch.int64)
    types = torch.randint(0, 2, (t,), generator=gen) if with_types else None
    return ForwardBatch(
        input_ids=torch.randint(0, 97, (t,), generator=gen),
        positions=torch.tensor([p for n in lens for p in range(n)], dtype=torch.int64),
        out_cache_loc=torch.zeros(t, dtype=torch.int64), req_pool_indices=z,
        seq_lens=torch.tensor(lens), extend_prefix_lens=z, extend_seq_lens=torch.tensor(lens),
        extend_start_loc=torch.tensor([sum(lens[:i]) for i in range(len(lens))]),
        is_decode=False, seq_lens_list=lens, extend_seq_lens_list=lens,
        extend_prefix_lens_list=[0] * len(lens), token_type_ids=types,
    )  # fmt: skip


def both_paths(enc: BertEncoder, batch: ForwardBatch, serial_max: int) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        enc.fused = False
        ref, starts, lens = enc(batch)
        enc.fused, enc.serial_max_tokens = True, serial_max
        got, starts2, lens2 = enc(batch)
    assert enc._stack, "the fused path did not build a stack"
    assert (starts, lens) == (starts2, lens2)
    return ref, got


@pytest.mark.parametrize("hidden,heads,inter,layers,act", [
    (64, 4, 128, 2, "gelu"), (96, 3, 200, 1, "gelu_new"), (384, 12, 1536, 1, "gelu"),
])  # fmt: skip
@pytest.mark.parametrize("lens", [[1], [9], [3, 17, 5], [40], [16, 16, 2]])
@pytest.mark.parametrize("with_types", [False, True])
@pytest.mark.parametrize("serial_max", [0, 1 << 20])  # split kernels, every kernel on one thread
def test_stack_equals_per_op(isa: str, hidden: int, heads: int, inter: int, layers: int, act: str,
                             lens: list[int], with_types: bool, serial_max: int) -> None:  # fmt: skip
    set_kernel_backend("native")
    enc = random_encoder(hidden, heads, inter, layers, act, seed=len(lens) + hidden)
    ref, got = both_paths(enc, packed(lens, with_types, seed=sum(lens)), serial_max)
    assert got.shape == (sum(lens), hidden)
    assert torch.equal(got, ref)


def test_long_batch_runs_in_one_region(isa: str) -> None:
    """Past the short-input fallback, a multi-threaded forward runs its layers in one OpenMP
    region (a barrier between ops), still equal to the per-op path."""
    enc = random_encoder(64, 4, 128, 2, "gelu", seed=7)
    batch = packed([40, 33], True, seed=5)  # 73 tokens: past the short-input fallback (64)
    both_paths(enc, batch, 0)
    before = enc._stack.region_forwards
    ref, got = both_paths(enc, batch, 0)
    assert enc._stack.region_forwards == before + 1
    assert torch.equal(got, ref)


@pytest.mark.parametrize("lens", [
    [60] * 9,  # 8 sequences fill a pass (480 rows), the ninth runs in a second one
    [128] * 6,  # exactly a pass's rows, then the rest
    [600, 5, 300, 300, 1],  # longer than a pass: alone; then passes of whole sequences
    [511, 2, 1],
])  # fmt: skip
def test_stack_passes_over_rows_equal_per_op(isa: str, lens: list[int]) -> None:
    """Batches over kEncoderPassRows (512) rows run each layer in passes of whole sequences: the
    same values as the per-op path's one pass over the batch."""
    enc = random_encoder(64, 4, 128, 2, "gelu", seed=len(lens), context_len=640)
    ref, got = both_paths(enc, packed(lens, True, seed=sum(lens)), 0)
    assert got.shape == (sum(lens), 64)
    assert torch.equal(got, ref)


def test_stack_needs_int16_linears() -> None:
    """fp32 linears (and the torch backend) keep the per-op path."""
    set_kernel_backend("native")
    enc = random_encoder(64, 4, 128, 1, "gelu", linear_format="float32")
    with torch.inference_mode():
        enc(packed([5], False, 0))
    assert enc._stack is False
    try:
        set_kernel_backend("torch")
        assert enc._native_stack(torch.zeros(3, dtype=torch.int64)) is None
    finally:
        set_kernel_backend("native")


def test_stack_rebuilt_after_repack() -> None:
    """post_load again (new packed weights): the stack follows, and still equals the per-op path."""
    set_kernel_backend("native")
    enc = random_encoder(64, 4, 128, 2, "gelu")
    batch = packed([7, 3], True, 1)
    both_paths(enc, batch, 16)
    first = enc._stack
    for m in enc.modules():
        if isinstance(m, Linear):
            m.weight.data.mul_(0.5)
            m.post_load()
    ref, got = both_paths(enc, batch, 16)
    assert enc._stack is not first
    assert torch.equal(got, ref)


def test_stack_bad_arguments() -> None:
    set_kernel_backend("native")
    enc = random_encoder(64, 4, 128, 1, "gelu")
    batch = packed([4], False, 0)
    with torch.inference_mode():
        enc(batch)
    stack = enc._stack
    cu = torch.tensor([0, 4])
    with pytest.raises(ValueError, match="input_ids"):
        stack.forward(batch.input_ids.int(), batch.positions, None, cu, True)
    with pytest.raises(ValueError, match="positions"):
        stack.forward(batch.input_ids, batch.positions[:3], None, cu, False)
    with pytest.raises(ValueError, match="cu_seqlens"):
        stack.forward(batch.input_ids, batch.positions, None, torch.tensor([0, 3]), True)
    layer = enc.layers[0]
    with pytest.raises(ValueError, match="do not chain"):
        a = layer.attention  # the intermediate projection where the qkv one goes
        stack.add_layer(
            layer.intermediate.int16_packed, layer.intermediate.bias, a.out_proj.int16_packed,
            a.out_proj.bias, a.out_norm.weight, a.out_norm.bias, layer.intermediate.int16_packed,
            layer.intermediate.bias, layer.output.int16_packed, layer.output.bias,
            layer.output_norm.weight, layer.output_norm.bias,
        )  # fmt: skip
    with pytest.raises(ValueError, match="int16_linear: packed"):
        stack.add_layer(*[torch.zeros(1)] * 12)


def test_server_args() -> None:
    from radixserve.args import ServerArgs

    assert ServerArgs().encoder_serial_max_tokens == ModelConfig(
        path="", architectures=[], model_type="", vocab_size=1, hidden_size=1,
        intermediate_size=1, num_layers=1, num_heads=1, num_kv_heads=1, head_dim=1, context_len=1,
    ).encoder_serial_max_tokens  # fmt: skip
    with pytest.raises(ValueError, match="encoder-serial-max-tokens"):
        ServerArgs(encoder_serial_max_tokens=-1)
