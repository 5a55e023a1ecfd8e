"""ModelRunner: loading, pool sizing, forward through its own pools, sampling, weight updates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_harness import hf_logits, make_tiny_model, random_prompt  # noqa: E402

from radixserve.args import ServerArgs  # noqa: E402
from radixserve.cache.memory_pool import resolve_kv_cache_dtype  # noqa: E402
from radixserve.engine.model_runner import (  # noqa: E402
    NATIVE_LAYER_OPS,
    ModelRunner,
    missing_native_ops,
)
from radixserve.forward_batch import ForwardBatch  # noqa: E402
from radixserve.layers.attention import native_attention_available  # noqa: E402
from radixserve.layers.backend import set_kernel_backend  # noqa: E402
from radixserve.layers.sampling_info import SamplingBatchInfo  # noqa: E402

ATTN = ["torch"] + (["native"] if native_attention_available() else [])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    path = str(tmp_path_factory.mktemp("runner") / "llama")
    return path, make_tiny_model("llama", path)


@pytest.fixture(autouse=True)
def restore_backend() -> Any:
    yield
    set_kernel_backend("native")


def make_runner(path: str, attn: str = "torch", **kw: Any) -> ModelRunner:
    args = dict(
        model_path=path,
        dtype="float32",
        max_total_tokens=512,
        max_running_requests=4,
        kernel_backend="torch",
        attention_backend=attn,
        num_threads=1,
    )
    args.update(kw)
    return ModelRunner(ServerArgs(**args))


def prefill_batch(runner: ModelRunner, prompts: list[list[int]]) -> ForwardBatch:
    """One prefill batch of whole prompts, through the runner's own req_to_token and KV pool."""
    ids, locs, pos, rows, starts = [], [], [], [], []
    slot = 1
    for p in prompts:
        row = runner.req_to_token_pool.alloc()
        assert row is not None
        slots = list(range(slot, slot + len(p)))
        slot += len(p)
        runner.req_to_token_pool.req_to_token[row, : len(p)] = torch.tensor(slots)
        starts.append(len(ids))
        ids += p
        locs += slots
        pos += list(range(len(p)))
        rows.append(row)
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    lens = [len(p) for p in prompts]
    return ForwardBatch(
        input_ids=t(ids),
        positions=t(pos),
        out_cache_loc=t(locs),
        req_pool_indices=t(rows),
        seq_lens=t(lens),
        extend_prefix_lens=t([0] * len(lens)),
        extend_seq_lens=t(lens),
        extend_start_loc=t(starts),
        is_decode=False,
    )


@pytest.mark.parametrize("attn", ATTN)
def test_runner_forward_matches_transformers(tiny: tuple[str, Any], attn: str) -> None:
    path, hf = tiny
    runner = make_runner(path, attn)
    assert runner.max_total_tokens == 512 and runner.kv_pool.num_slots == 512
    assert runner.req_to_token_pool.size >= 4
    assert runner.req_to_token_pool.req_to_token.shape[1] == runner.model_config.context_len
    assert runner.attention_backend_name == attn and runner.tokenizer.encode("w7") == [7]
    prompts = [random_prompt(5, 1), random_prompt(11, 2)]
    logits = runner.forward(prefill_batch(runner, prompts))
    assert logits.shape == (2, 320) and logits.dtype == torch.float32
    for got, p in zip(logits, prompts, strict=True):
        torch.testing.assert_close(got, hf_logits(hf, p)[-1], atol=1e-4, rtol=0)


@pytest.mark.skipif(
    bool(missing_native_ops(NATIVE_LAYER_OPS)) or not native_attention_available(),
    reason="radixserve._C lacks the native kernels",
)
def test_runner_native_kernels(tiny: tuple[str, Any]) -> None:
    path, hf = tiny
    runner = make_runner(path, "native", kernel_backend="native")
    assert runner.kernel_backend == "native"
    assert runner.model.lm_head.packed is not None  # post_load packed every Linear
    prompts = [random_prompt(4, 3), random_prompt(9, 4)]
    logits = runner.forward(prefill_batch(runner, prompts))
    for got, p in zip(logits, prompts, strict=True):
        torch.testing.assert_close(got, hf_logits(hf, p)[-1], atol=1e-4, rtol=0)
    set_kernel_backend("torch")


def test_runner_sample_greedy(tiny: tuple[str, Any]) -> None:
    runner = make_runner(tiny[0])
    logits = torch.randn(3, 320)
    info = SamplingBatchInfo(
        temperatures=torch.zeros(3),
        top_ps=torch.ones(3),
        top_ks=torch.full((3,), 320, dtype=torch.int32),
        min_ps=torch.zeros(3),
        seeds=torch.arange(3),
        steps=torch.zeros(3, dtype=torch.int64),
        is_all_greedy=True,
    )
    out = runner.sample(logits, info)
    assert out.next_token_ids.tolist() == logits.argmax(-1).tolist()


def test_kv_pool_sized_from_memory_fraction(tiny: tuple[str, Any]) -> None:
    runner = make_runner(tiny[0], max_total_tokens=None, mem_fraction_static=0.001)
    per_token = runner.model_config.kv_bytes_per_token()
    assert per_token == 2 * 2 * 2 * 16 * 4  # K and V, 2 layers, 2 kv heads, head_dim 16, fp32
    assert runner.max_total_tokens >= 16
    assert runner.kv_pool.size_bytes == (runner.max_total_tokens + 1) * per_token


def test_update_weights_from_disk(tiny: tuple[str, Any], tmp_path: Any) -> None:
    path, hf = tiny
    runner = make_runner(path)
    prompt = random_prompt(7)
    new_path = str(tmp_path / "new")
    hf2 = make_tiny_model("llama", new_path, seed=5)
    runner.load_weights_from_disk(new_path)
    got = runner.forward(prefill_batch(runner, [prompt]))[0]
    torch.testing.assert_close(got, hf_logits(hf2, prompt)[-1], atol=1e-4, rtol=0)
    # A checkpoint of another shape is refused and the served weights stay.
    other = str(tmp_path / "other")
    make_tiny_model("llama", other, hidden_size=32)
    with pytest.raises(ValueError, match="hidden_size"):
        runner.load_weights_from_disk(other)
    with pytest.raises(FileNotFoundError):
        runner.load_weights_from_disk(str(tmp_path / "missing"))
    runner.req_to_token_pool.clear()
    got = runner.forward(prefill_batch(runner, [prompt]))[0]
    torch.testing.assert_close(got, hf_logits(hf2, prompt)[-1], atol=1e-4, rtol=0)


def test_runner_rejects_unknown_model(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_runner(str(tmp_path / "nothing"))


def decode_batch(runner: ModelRunner, prefill: ForwardBatch, next_ids: list[int]) -> ForwardBatch:
    """One decode step after prefill_batch: each request's next token into a fresh slot."""
    lens = prefill.seq_lens.tolist()
    rows = prefill.req_pool_indices.tolist()
    first = int(prefill.out_cache_loc.max()) + 1
    slots = list(range(first, first + len(lens)))
    for row, n, slot in zip(rows, lens, slots, strict=True):
        runner.req_to_token_pool.req_to_token[row, n] = slot
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    return ForwardBatch(
        input_ids=t(next_ids),
        positions=t(lens),
        out_cache_loc=t(slots),
        req_pool_indices=t(rows),
        seq_lens=t([n + 1 for n in lens]),
        extend_prefix_lens=t(lens),
        extend_seq_lens=t([1] * len(lens)),
        extend_start_loc=t(list(range(len(lens)))),
        is_decode=True,
    )


NATIVE_OK = not missing_native_ops(NATIVE_LAYER_OPS) and native_attention_available()


@pytest.mark.parametrize(
    "attn, kernels",
    [("torch", "torch")] + ([("native", "torch"), ("native", "native")] if NATIVE_OK else []),
)
def test_bf16_kv_cache_under_fp32_model(tiny: tuple[str, Any], attn: str, kernels: str) -> None:
    """--kv-cache-dtype bfloat16: half the pool, logits close to the fp32 pool's (prefill and
    decode; native/native runs the fused decode step)."""
    path = tiny[0]
    prompts = [random_prompt(5, 1), random_prompt(11, 2)]
    logits = {}
    for kv in ("auto", "bfloat16"):
        runner = make_runner(path, attn, kernel_backend=kernels, kv_cache_dtype=kv)
        prefill = prefill_batch(runner, prompts)
        first = runner.forward(prefill)
        nxt = runner.forward(decode_batch(runner, prefill, first.argmax(-1).tolist()))
        logits[kv] = (first, nxt, runner.kv_pool)
    fp32_pool, bf16_pool = logits["auto"][2], logits["bfloat16"][2]
    assert fp32_pool.dtype == torch.float32 and bf16_pool.dtype == torch.bfloat16
    assert 2 * bf16_pool.size_bytes == fp32_pool.size_bytes
    for got, ref in zip(logits["bfloat16"][:2], logits["auto"][:2], strict=True):
        assert got.dtype == torch.float32
        assert not torch.equal(got, ref)  # the bf16 pool really was read
        torch.testing.assert_close(got, ref, atol=2e-2, rtol=0)
    if kernels == "native":
        assert runner.model._decoder_stack, "the fused decode step did not run"
    set_kernel_backend("torch")


def test_kv_cache_dtype_sizes_the_pool(tiny: tuple[str, Any]) -> None:
    fp32 = make_runner(tiny[0], max_total_tokens=None, mem_fraction_static=0.001)
    bf16 = make_runner(
        tiny[0], max_total_tokens=None, mem_fraction_static=0.001, kv_cache_dtype="bfloat16"
    )
    assert fp32.model_config.kv_bytes_per_token(bf16.kv_dtype) * 2 == (
        fp32.model_config.kv_bytes_per_token()
    )
    assert bf16.max_total_tokens > 1.5 * fp32.max_total_tokens  # same budget, half the bytes


def test_kv_cache_dtype_errors(tiny: tuple[str, Any]) -> None:
    with pytest.raises(ValueError, match="--kv-cache-dtype must be one of"):
        ServerArgs(kv_cache_dtype="float16")
    with pytest.raises(ValueError, match="kv-cache-dtype float32 under a bfloat16 model"):
        make_runner(tiny[0], dtype="bfloat16", kv_cache_dtype="float32")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_kv_cache_dtype("bfloat16", torch.float32, "cuda")
    assert resolve_kv_cache_dtype("auto", torch.bfloat16, "cuda") == torch.bfloat16
    assert resolve_kv_cache_dtype("bfloat16", torch.bfloat16, "cuda") == torch.bfloat16
    # auto: bfloat16 only where asked for (a GGUF kept quantized) and on the CPU.
    assert resolve_kv_cache_dtype("auto", torch.float32, "cpu", auto_bf16=True) == torch.bfloat16
    assert resolve_kv_cache_dtype("auto", torch.float32, "cuda", auto_bf16=True) == torch.float32
    assert resolve_kv_cache_dtype("float32", torch.float32, "cpu", auto_bf16=True) == torch.float32
    assert make_runner(tiny[0]).kv_dtype == torch.float32  # not the default model


def test_default_model_gets_a_bf16_kv_cache() -> None:
    runner = ModelRunner(ServerArgs(max_total_tokens=64, max_running_requests=2, num_threads=1))
    assert runner.model_config.keep_quantized and runner.model_config.dtype == torch.float32
    assert runner.kv_dtype == torch.bfloat16 and runner.kv_pool.dtype == torch.bfloat16
