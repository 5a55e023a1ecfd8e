"""The fused decode step (_C.DecoderStack: the layer loop in one native call) against the per-op
Python layers, its reference: same kernels on the same values, so the logits agree to 1e-5
(fp32) on tiny random models of each family and on the default quantized GGUF model."""

from __future__ import annotations

from typing import Any, Optional

import pytest
import torch
from model_harness import Driver, greedy, make_tiny_model, random_prompt, use_kernels

from radixserve.forward_batch import ForwardBatch, PausedForward
from radixserve.layers.logits import HEAD_SLICES
from radixserve.models.loader import load_model, load_model_config

STEPS = 6


def _decode_batch(
    model: Any, prompts: list[list[int]], fused: bool, kv_dtype: Optional[torch.dtype] = None
) -> list[torch.Tensor]:
    """Prefill each prompt, then STEPS greedy decode steps of all requests in one batch."""
    model.fused_decode = fused
    try:
        drv = Driver(model, backend="native", kv_dtype=kv_dtype)
        reqs = [drv.new_req() for _ in prompts]
        last = torch.cat([drv.step([(r, p)]) for r, p in zip(reqs, prompts, strict=True)])
        out = [last]
        for _ in range(STEPS):
            last = drv.step([(r, [t]) for r, t in zip(reqs, greedy(last), strict=True)])
            out.append(last)
        return out
    finally:
        model.fused_decode = True


def _compare(
    model: Any, prompts: list[list[int]], atol: float, kv_dtype: Optional[torch.dtype] = None
) -> None:
    fused = _decode_batch(model, prompts, fused=True, kv_dtype=kv_dtype)
    assert model._decoder_stack, "the fused decode path did not run"
    per_op = _decode_batch(model, prompts, fused=False, kv_dtype=kv_dtype)
    for a, b in zip(fused, per_op, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize(
    "kind,overrides",
    [("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": 5})],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_equals_per_op_tiny(
    tmp_path: Any, kind: str, overrides: dict[str, Any], dtype: str
) -> None:
    make_tiny_model(kind, str(tmp_path), **overrides)
    model = load_model(load_model_config(str(tmp_path), dtype))
    use_kernels(model, "native")
    prompts = [random_prompt(n, seed=n) for n in (3, 9, 1)]
    _compare(model, prompts, atol=1e-5 if dtype == "float32" else 1e-2)


def test_fused_equals_per_op_bf16_kv_cache(tmp_path: Any) -> None:
    """An fp32 model over a bfloat16 KV pool (--kv-cache-dtype bfloat16): the same kernels."""
    make_tiny_model("llama", str(tmp_path))
    model = load_model(load_model_config(str(tmp_path), "float32"))
    use_kernels(model, "native")
    prompts = [random_prompt(n, seed=n) for n in (3, 9, 1)]
    _compare(model, prompts, atol=1e-5, kv_dtype=torch.bfloat16)


def test_qk_norm_models_keep_the_per_op_path(tmp_path: Any) -> None:
    make_tiny_model("qwen3", str(tmp_path))
    model = load_model(load_model_config(str(tmp_path), "float32"))
    use_kernels(model, "native")
    _decode_batch(model, [random_prompt(4)], fused=True)
    assert model._decoder_stack is False


def test_fused_equals_per_op_default_quantized_model() -> None:
    model = load_model(load_model_config(None, "auto", native_kernels=True))
    use_kernels(model, "native")
    prompts = [random_prompt(n, seed=n) for n in (12, 5)]
    _compare(model, prompts, atol=1e-5)


def _pause_after_every_layer(model: Any) -> list[int]:
    """Make model(batch) pause after every layer and resume at once (a background step given
    way to online work); returns the list the layers paused at are appended to."""
    paused_at: list[int] = []

    def forward(batch: ForwardBatch) -> torch.Tensor:
        out = model.forward_pausable(batch, lambda: True)
        while isinstance(out, PausedForward):
            paused_at.append(out.next_layer)
            out = model.forward_pausable(batch, lambda: True, out)
        return out  # type: ignore[no-any-return]

    model.forward = forward
    return paused_at


@pytest.mark.parametrize("fused", [True, False])
def test_paused_forward_equals_whole_default_model(fused: bool) -> None:
    """Prefill (per-op layers) and decode steps (DecoderStack layer ranges, or per-op) run
    layer by layer with a pause after each give bit-identical logits."""
    model = load_model(load_model_config(None, "auto", native_kernels=True))
    use_kernels(model, "native")
    prompts = [random_prompt(n, seed=n) for n in (12, 5)]
    whole = _decode_batch(model, prompts, fused=fused)
    paused_at = _pause_after_every_layer(model)
    paused = _decode_batch(model, prompts, fused=fused)
    layers = model.config.num_layers
    assert paused_at == list(range(1, layers + 1)) * (len(prompts) + STEPS)
    assert bool(model._decoder_stack) == fused, "the fused decode path ran (or did not)"
    for a, b in zip(whole, paused, strict=True):
        assert torch.equal(a, b)


@pytest.fixture
def threading_mode() -> Any:
    """Set _C.set_decoder_threading (and torch's thread count) for a test; restore after."""
    from radixserve.layers.backend import native_ops

    ops = native_ops()
    threads = torch.get_num_threads()
    yield ops.set_decoder_threading
    ops.set_decoder_threading("step")
    torch.set_num_threads(threads)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_step_region_equals_per_call_default_model(threading_mode: Any, threads: int) -> None:
    """The fused step in one OpenMP region gives bit-identical logits to the fused step whose
    kernels open their own regions (same work items, same arithmetic), at 1 thread (no region),
    2 (this host's cores) and 3 (more threads than cores); torch's own OpenMP matmuls run in
    between, in the same process."""
    torch.set_num_threads(threads)
    model = load_model(load_model_config(None, "auto", native_kernels=True))
    use_kernels(model, "native")
    prompts = [random_prompt(n, seed=n) for n in (40, 5, 300)]
    out: dict[str, list[torch.Tensor]] = {}
    for mode in ("step", "per_call", "step"):
        threading_mode(mode)
        a = torch.randn(256, 256)
        torch.mm(a, a)
        out[mode] = _decode_batch(model, prompts, fused=True)
        assert model._decoder_stack, "the fused decode path did not run"
    for a, b in zip(out["step"], out["per_call"], strict=True):
        assert torch.equal(a, b)


def test_step_region_error_reaches_the_caller(threading_mode: Any) -> None:
    """A kernel's argument error inside the step's region (a KV slot out of range) is raised to
    the caller, with no thread left waiting; the next call works."""
    torch.set_num_threads(2)
    model = load_model(load_model_config(None, "auto", native_kernels=True))
    use_kernels(model, "native")
    drv = Driver(model, backend="native")
    req = drv.new_req()
    drv.step([(req, random_prompt(8))])
    drv.step([(req, [5])])  # a decode step at position 8 builds the stack
    cfg = model.config
    stack = model._decoder_stack
    assert stack, "the fused decode path did not run"
    pool = drv.kv_pool
    h = torch.randn(1, cfg.hidden_size)
    args = (torch.tensor([8]), pool.k_buffers, pool.v_buffers)
    rest = (drv.req_pool.req_to_token, torch.tensor([req.row]), torch.tensor([9]))
    for mode in ("step", "per_call"):
        threading_mode(mode)
        bad_slot = torch.tensor([pool.k_buffers[0].shape[0] + 5])
        with pytest.raises((RuntimeError, ValueError), match="out of range"):
            stack.decode(h.clone(), *args, bad_slot, *rest)
        ok, _ = stack.decode(h.clone(), *args, torch.tensor([req.slots[-1]]), *rest)
        assert torch.isfinite(ok).all()


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kind", ["q4_1", "q8_0", "bf16", "fp32"])
def test_projection_calls_as_served_equal_the_per_op_call(
    threading_mode: Any, threads: int, kind: str
) -> None:
    """_C.run_projection_calls (the "as served" figures of bench_linear.py) runs a projection
    the way the fused step does; its last call's output is bit-identical to the per-op kernel's
    on the same weight, in both threading modes; bad arguments are clear errors."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    from radixserve.layers.backend import native_ops

    ops = native_ops()
    torch.set_num_threads(threads)
    n, k = 200, 576  # 13 decode work items: an uneven split over 2 and 3 threads
    g = torch.Generator().manual_seed(threads)
    quant = kind.startswith("q")
    weights = []
    for _ in range(3):
        w = torch.randn(n, k, generator=g)
        if quant:
            raw = quantize(w.numpy(), GGMLQuantizationType[kind.upper()])
            weights.append(ops.pack_quant_weight(torch.from_numpy(raw), kind, k))
        else:
            weights.append(
                ops.pack_linear_weight(w.to(torch.bfloat16 if kind == "bf16" else w.dtype))
            )
    x = torch.randn(1, k, generator=g)
    if kind == "bf16":
        x = x.to(torch.bfloat16)
    ref = ops.quant_linear(x, weights[1], None) if quant else ops.linear(x, weights[1], None)
    for mode in ("step", "per_call"):
        threading_mode(mode)
        out = ops.run_projection_calls(x, weights, quant, 5)  # the last call uses weights[1]
        assert out.dtype == ref.dtype and torch.equal(out, ref), mode
    with pytest.raises((RuntimeError, ValueError), match="at least one"):
        ops.run_projection_calls(x, [], quant, 5)
    with pytest.raises((RuntimeError, ValueError), match="K="):
        ops.run_projection_calls(torch.randn(1, k + 32).to(x.dtype), weights, quant, 2)


@pytest.mark.parametrize("dtype", ["auto", "float32", "bfloat16"])
def test_lm_head_paused_between_vocab_slices_equals_whole(dtype: str) -> None:
    """The pausable LM head (LogitsProcessor.forward_pausable) of the default model, quantized
    (tied Q8_0 embedding), float32 and bfloat16, pausing after each of its vocabulary slices and
    resuming, gives the whole head's logits bit for bit at every row count."""
    model = load_model(load_model_config(None, dtype, native_kernels=True))
    use_kernels(model, "native")
    head = model.logits_processor
    assert head.lm_head.quant_packed is not None or dtype != "auto"
    for rows in (1, 5, 6, 64, 67):
        gen = torch.Generator().manual_seed(rows)
        hidden = torch.randn(rows, model.config.hidden_size, generator=gen).to(model.config.dtype)
        with torch.inference_mode():
            whole = model.compute_logits(hidden)
            logits, paused_at = model.compute_logits_pausable(hidden, lambda: True)
            columns = []
            while paused_at is not None:
                columns.append(paused_at)
                logits, paused_at = model.compute_logits_pausable(
                    hidden, lambda: True, logits, paused_at
                )
        # A pause after each slice, the last one too (all columns done: resuming only copies).
        assert len(columns) == HEAD_SLICES and columns == sorted(columns), columns
        assert columns[-1] == head.lm_head.out_features
        assert logits.dtype == torch.float32 and torch.equal(logits, whole), rows
