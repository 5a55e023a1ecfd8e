"""--device cuda end to end: greedy tokens on the GPU equal the CPU float32 reference.

Skipped unless torch sees a GPU and radixserve._C was built with CUDA: this project's CI has no
GPU. tools/gpu_check.sh runs this file on a lent GPU machine (benchmarks/results/gpu.md says
whether that has happened). The scheduler runs in this process (no server, no ZMQ sockets), with
CUDA graphs and overlap scheduling on unless a test turns them off.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from radixserve.args import ServerArgs
from radixserve.device import cuda_kernels_built
from radixserve.engine.scheduler import Scheduler, build_scheduler

from .conftest import VOCAB, save_tiny_llama
from .test_scheduler_logic import run, submit

CUDA_OK = torch.cuda.is_available() and cuda_kernels_built()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not CUDA_OK,
        reason=f"needs an NVIDIA GPU and radixserve._C built with CUDA "
        f"(torch.cuda.is_available()={torch.cuda.is_available()}, "
        f"_C.has_cuda={cuda_kernels_built()})",
    ),
]


@pytest.fixture(scope="module")
def tiny_llama_hd32_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """head_dim 32: the smallest the CUDA attention kernels take (head_dim 16 goes to torch's)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-hd32"), hidden_size=128)


def greedy(path: str | None, prompts: list[list[int]], new: int, **kw: Any) -> list[list[int]]:
    args = ServerArgs(model_path=path, dtype="float32", max_total_tokens=8192,
                      max_running_requests=16, grammar_backend="none", **kw)  # fmt: skip
    sched: Scheduler = build_scheduler(args)
    for i, p in enumerate(prompts):
        submit(sched, f"q{i}", p, max_new=new, temperature=0.0, ignore_eos=True)
    out = run(sched)
    if kw.get("device") == "cuda":
        assert sched.runner.device.type == "cuda"
        assert sched.kv.available() + sched.kv.evictable() == sched.kv.size()
    return [out[f"q{i}"].new_ids for i in range(len(prompts))]


@pytest.mark.parametrize(
    "gpu", [{}, {"disable_cuda_graph": True}, {"disable_overlap_schedule": True},
            {"attention_backend": "torch"}]  # fmt: skip
)
def test_tiny_llama_gpu_greedy_equals_cpu_fp32(
    tiny_llama_hd32_dir: str, gpu: dict[str, Any]
) -> None:
    rng = random.Random(8)
    prompts = [[rng.randrange(3, VOCAB) for _ in range(rng.randrange(3, 60))] for _ in range(7)]
    prompts.append(prompts[0][:10] + prompts[1])  # a prefix-cache hit
    cpu = greedy(tiny_llama_hd32_dir, prompts, 24, device="cpu", num_threads=1)
    assert greedy(tiny_llama_hd32_dir, prompts, 24, device="cuda", **gpu) == cpu


def test_unsupported_head_dim_falls_back_to_torch_attention(tiny_llama_dir: str) -> None:
    """head_dim 16 has no CUDA attention kernel: the runner picks the torch backend instead."""
    rng = random.Random(3)
    prompts = [[rng.randrange(3, VOCAB) for _ in range(rng.randrange(3, 40))] for _ in range(4)]
    cpu = greedy(tiny_llama_dir, prompts, 12, device="cpu", num_threads=1)
    assert greedy(tiny_llama_dir, prompts, 12, device="cuda") == cpu


def test_default_model_gpu_greedy_equals_cpu_fp32() -> None:
    from radixserve.models.default_model import default_model_path
    from radixserve.models.tokenizer import load_tokenizer

    try:
        default_model_path()
    except FileNotFoundError:
        pytest.skip("the default model is not installed")
    tok = load_tokenizer(None)
    texts = ["The capital of France is", "def fibonacci(n):", "Count: 1, 2, 3, 4,"]
    prompts = [tok.encode(t) for t in texts]
    cpu = greedy(None, prompts, 16, device="cpu")
    assert greedy(None, prompts, 16, device="cuda") == cpu


def test_bf16_gpu_serves_every_batch_size(tiny_llama_hd32_dir: str) -> None:
    """bf16 has no CPU reference to equal; every padded graph size must still decode."""
    rng = random.Random(2)
    prompts = [[rng.randrange(3, VOCAB) for _ in range(9)] for _ in range(13)]
    args = ServerArgs(model_path=tiny_llama_hd32_dir, device="cuda", dtype="bfloat16",
                      max_total_tokens=8192, max_running_requests=16, grammar_backend="none")  # fmt: skip
    sched = build_scheduler(args)
    for i, p in enumerate(prompts):
        submit(sched, f"b{i}", p, max_new=5 + i, temperature=0.0, ignore_eos=True)
    out = run(sched)
    assert all(len(out[f"b{i}"].new_ids) == 5 + i for i in range(len(prompts)))
    assert sched.runner.graph_runner is not None and sched.runner.graph_runner.num_replays > 0
