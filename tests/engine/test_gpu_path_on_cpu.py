"""The device-agnostic parts of GPU serving, run on the CPU (this project has no GPU).

- decode graph shapes: the padded batch-size buckets, and padded decode (what a CUDA graph
  replays) giving the same logits as the unpadded batch;
- the host/device split: one staged transfer per step and a req_to_token table on the "device"
  fed only by it (a mirrored table on the CPU);
- overlap scheduling: launching step n+1 before step n is processed gives the plain loop's
  tokens, and gives back every KV slot (finished requests' extra tokens included);
- everything at once on the tiny Llama: staged batches + mirrored table + padded decode +
  overlap == the plain CPU path, greedy and seeded sampling.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from radixserve.args import ServerArgs
from radixserve.cache.memory_pool import ReqToTokenPool
from radixserve.cache.radix_cache import RadixCache
from radixserve.device import HostCopy, resolve_device, stage_batch
from radixserve.engine.cuda_graph import (
    MAX_GRAPH_BS,
    DecodeGraphRunner,
    graph_batch_sizes,
    padded_batch_size,
)
from radixserve.engine.kv_manager import KVManager, make_allocator
from radixserve.engine.model_runner import ModelRunner
from radixserve.engine.scheduler import Scheduler
from radixserve.forward_batch import CascadeGroups, ForwardBatch
from radixserve.layers.attention import create_attention_backend
from radixserve.layers.backend import device_op
from radixserve.layers.sampling_info import SampleOutput

from .conftest import VOCAB
from .test_scheduler_logic import EOS, all_free, expected, make, prompts, run, submit

# -- graph shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_bs", [1, 3, 8, 13, 64, 100, 160, 1000])
def test_graph_batch_sizes(max_bs: int) -> None:
    sizes = graph_batch_sizes(max_bs)
    assert sizes == sorted(set(sizes)) and sizes[0] == 1
    assert sizes[-1] == min(max_bs, MAX_GRAPH_BS)
    for bs in range(1, sizes[-1] + 1):
        padded = padded_batch_size(bs, sizes)
        assert padded is not None and padded >= bs and padded in sizes
        # The smallest bucket that fits: the one below is too small.
        i = sizes.index(padded)
        assert i == 0 or sizes[i - 1] < bs
        if bs > 64:  # coarse buckets still waste little
            assert padded - bs < 16
    assert padded_batch_size(sizes[-1] + 1, sizes) is None
    assert padded_batch_size(0, sizes) is None
    with pytest.raises(ValueError):
        graph_batch_sizes(0)


# -- host/device split -----------------------------------------------------------------------


def random_batch(rng: random.Random, bs: int, cascade: bool) -> ForwardBatch:
    ext = [rng.randrange(1, 5) for _ in range(bs)]
    n = sum(ext)
    t = lambda k: torch.tensor([rng.randrange(1000) for _ in range(k)], dtype=torch.int64)  # noqa: E731
    return ForwardBatch(
        input_ids=t(n),
        positions=t(n),
        out_cache_loc=t(n),
        req_pool_indices=t(bs),
        seq_lens=t(bs),
        extend_prefix_lens=t(bs),
        extend_seq_lens=torch.tensor(ext),
        extend_start_loc=t(bs),
        is_decode=False,
        logits_indices=t(3),
        seq_lens_list=[1, 2],
        cascade=CascadeGroups(t(bs), t(2)) if cascade else None,
    )


@pytest.mark.parametrize("cascade", [False, True])
def test_stage_batch_is_one_copy_of_every_index(cascade: bool) -> None:
    rng = random.Random(3)
    batch = random_batch(rng, 5, cascade)
    pool = ReqToTokenPool(4, 16, mirror=True)
    pool.write(2, 3, torch.tensor([7, 8, 9]))
    pool.write(0, 0, torch.tensor([5]))
    staged, updates = stage_batch(batch, torch.device("cpu"), pool.take_updates())
    for name in ("input_ids", "positions", "out_cache_loc", "req_pool_indices", "seq_lens",
                 "extend_prefix_lens", "extend_seq_lens", "extend_start_loc", "logits_indices"):  # fmt: skip
        got, want = getattr(staged, name), getattr(batch, name)
        assert torch.equal(got, want), name
        assert got.data_ptr() != want.data_ptr()  # a copy, not the host tensor
    # All staged tensors are views of one buffer: one transfer.
    storages = {staged.input_ids.untyped_storage().data_ptr()}
    storages.add(staged.extend_start_loc.untyped_storage().data_ptr())
    if cascade:
        assert batch.cascade is not None and staged.cascade is not None
        assert torch.equal(staged.cascade.group_ids, batch.cascade.group_ids)
        storages.add(staged.cascade.prefix_lens.untyped_storage().data_ptr())
    assert updates is not None
    storages.add(updates.slots.untyped_storage().data_ptr())
    assert len(storages) == 1
    assert staged.seq_lens_list == [1, 2] and staged.is_decode is False
    # The device table changes only when the updates are applied.
    assert int(pool.device_table[2, 4]) == 0
    pool.apply_updates(updates)
    assert torch.equal(pool.device_table, pool.req_to_token)
    assert pool.take_updates() is None


def test_stage_batch_keeps_device_resident_tensors() -> None:
    """Input ids already on the device (overlap: last step's samples) are not copied again;
    every host index lands on the device. 'meta' stands in for a GPU."""
    batch = random_batch(random.Random(9), 4, cascade=False)
    on_device = torch.empty(batch.num_tokens, dtype=torch.int64, device="meta")
    batch.input_ids = on_device
    staged, updates = stage_batch(batch, torch.device("meta"), None)
    assert staged.input_ids is on_device and updates is None
    for name in ("positions", "out_cache_loc", "seq_lens", "extend_start_loc", "logits_indices"):
        got = getattr(staged, name)
        assert got.device.type == "meta" and got.shape == getattr(batch, name).shape, name


def test_mirrored_table_tracks_overwrites() -> None:
    rng = random.Random(5)
    pool = ReqToTokenPool(6, 32, mirror=True)
    assert pool.mirrored and pool.device_table is not pool.req_to_token
    for _ in range(50):
        for _ in range(rng.randrange(1, 4)):
            row, start = rng.randrange(6), rng.randrange(30)
            n = rng.randrange(1, 33 - start)
            pool.write(row, start, torch.tensor([rng.randrange(1, 99) for _ in range(n)]))
        updates = pool.take_updates()
        assert updates is not None
        pool.apply_updates(updates)
        assert torch.equal(pool.device_table, pool.req_to_token)
    single = ReqToTokenPool(2, 4)
    assert not single.mirrored and single.device_table is single.req_to_token
    single.write(1, 0, torch.tensor([3]))
    assert single.take_updates() is None


def test_device_choice_and_dispatch_errors() -> None:
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
        with pytest.raises(ValueError, match="--device cuda needs"):
            resolve_device("cuda")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="--device must be"):
        resolve_device("tpu")
    with pytest.raises(ValueError):
        ServerArgs(device="gpu")
    with pytest.raises(ValueError):
        ServerArgs(attention_backend="flash")
    meta = torch.empty(2, 2, device="meta")
    with pytest.raises(RuntimeError, match="no rms_norm kernel for meta"):
        device_op("rms_norm", meta)
    assert device_op("rms_norm", torch.empty(1)) is not None
    from radixserve.cache.memory_pool import KVPool

    pool = KVPool(8, 1, 1, 4, torch.float32)
    with pytest.raises(ValueError, match="flashinfer needs --device cuda"):
        create_attention_backend("flashinfer", torch.zeros(2, 4, dtype=torch.int32), pool, [-1])


def test_host_copy_on_cpu_is_the_sample() -> None:
    out = SampleOutput(next_token_ids=torch.tensor([4, 5]))
    assert HostCopy(out).wait() is out


# -- overlap scheduling against the KV-reading test model ------------------------------------


@pytest.mark.parametrize("radix", [True, False])
def test_overlap_gives_plain_loop_tokens_and_frees_kv(radix: bool) -> None:
    ps = prompts(10, seed=7, shared=5)  # at most 45 tokens, 57 with their outputs
    ps[3] = ps[3][:5] + [(7 * i) % (EOS - 1) for i in range(55)]  # the only one reaching 64
    results = {}
    for overlap in (False, True):
        s = make(radix=radix)
        s.overlap = overlap
        s.runner.force_eos_at = {len(ps[3]) + 4: 1}  # one request stops early on EOS
        for i, p in enumerate(ps):
            submit(s, f"r{i}", p, max_new=3 + i)
        out = run(s)
        results[overlap] = {rid: (up.new_ids, up.finish_reason) for rid, up in out.items()}
        for i, p in enumerate(ps):
            if i != 3:
                assert out[f"r{i}"].new_ids == expected(p, 3 + i)
        assert out["r3"].finish_reason is not None and out["r3"].finish_reason.type == "stop" and out["r3"].new_ids[-1] == EOS
        assert (s.stats["num_lookahead_steps"] > 0) == overlap
        assert all_free(s)
    assert results[True] == results[False]


def test_overlap_abort_while_pending_gives_back_slots() -> None:
    s = make()
    s.overlap = True
    for i, p in enumerate(prompts(4, seed=2)):
        submit(s, f"a{i}", p, max_new=30)
    s.step()  # prefill
    s.step()  # first decode: left pending
    assert s.pending is not None
    s.abort("a1")
    s.step()  # lookahead of the other three, a1's pending slot freed
    assert s.pending is not None and "a1" not in {r.rid for r in s.pending.reqs}
    s.abort("a2")
    out = run(s)
    assert set(out) == {"a0", "a3"} and s.stats["num_lookahead_steps"] > 5
    assert all_free(s)


def test_flush_right_after_the_last_reply_settles_the_lookahead() -> None:
    """The last replies go out while a lookahead step for the same requests is still pending;
    a flush arriving before the loop's next step must settle it, not refuse (seen as a flaky
    spawned-engine test)."""
    s = make()
    s.overlap = True
    for i, p in enumerate(prompts(3, seed=4)):
        submit(s, f"f{i}", p, max_new=6)
    finished: set[str] = set()
    for _ in range(100):
        finished |= {up.rid for up in s.step() if up.finished}
        if len(finished) == 3:
            break
    assert len(finished) == 3 and s.pending is not None  # every reply out, lookahead pending
    assert s.flush_cache() and s.pending is None
    assert s.kv.available() == s.runner.max_total_tokens


# -- the whole GPU-shaped path on the tiny Llama --------------------------------------------


def scheduler(path: str, gpu_like: bool) -> Scheduler:
    args = ServerArgs(model_path=path, dtype="float32", max_total_tokens=2048,
                      max_running_requests=8, num_threads=1, grammar_backend="none",
                      kernel_backend="native", attention_backend="native")  # fmt: skip
    runner: Any = ModelRunner(args, mirror_req_to_token=gpu_like)
    if gpu_like:  # what --device cuda runs, minus torch.cuda.graph itself
        runner.graph_runner = DecodeGraphRunner(
            runner.model, graph_batch_sizes(8), runner.device, capture=False, pad_row=0
        )
    alloc = make_allocator(int(runner.max_total_tokens))
    kv = KVManager(alloc, RadixCache(alloc, 1), runner.req_to_token_pool)
    s = Scheduler(args, runner, kv)
    s.overlap = gpu_like
    return s


def test_padded_decode_matches_unpadded(tiny_llama_dir: str) -> None:
    s = scheduler(tiny_llama_dir, gpu_like=False)
    runner = s.runner
    rng = random.Random(1)
    for i in range(3):
        submit(s, f"p{i}", [rng.randrange(3, VOCAB) for _ in range(5 + 3 * i)], max_new=4,
               temperature=0.0)  # fmt: skip
    s.step()  # prefill of the three prompts
    reqs = list(s.running)
    assert len(reqs) == 3
    from radixserve.engine.schedule_batch import build_forward_batch

    for r in reqs:
        r.extend_len = 1
    fb = build_forward_batch(reqs, s.kv.alloc(3), s.kv)  # type: ignore[arg-type]
    plain = runner.forward(fb)
    graphs = DecodeGraphRunner(runner.model, [1, 2, 4, 8], runner.device, capture=False)
    padded = graphs.forward(fb)  # 3 requests on the size-4 buffers, one padding row
    assert padded is not None and graphs.num_replays == 1
    torch.testing.assert_close(padded, plain, rtol=1e-5, atol=1e-5)
    graphs8 = DecodeGraphRunner(runner.model, [8], runner.device, capture=False, pad_row=5)
    torch.testing.assert_close(graphs8.forward(fb), plain, rtol=1e-5, atol=1e-5)
    # Not a plain decode (a prefill, cascade groups) or too large: the caller runs it eagerly.
    fb.is_decode = False
    assert graphs.forward(fb) is None
    with pytest.raises(ValueError):
        DecodeGraphRunner(runner.model, [1], runner.device, capture=True)


def test_gpu_shaped_path_equals_plain_cpu_path(tiny_llama_dir: str) -> None:
    rng = random.Random(4)
    shared = [rng.randrange(3, VOCAB) for _ in range(6)]
    ps = [shared + [rng.randrange(3, VOCAB) for _ in range(rng.randrange(2, 20))]
          for _ in range(6)]  # fmt: skip
    outs = {}
    for gpu_like in (False, True):
        s = scheduler(tiny_llama_dir, gpu_like)
        for i, p in enumerate(ps):
            params: dict[str, Any] = {"temperature": 0.0}
            if i == 4:  # seeded sampling: the lookahead's draw must use the right step
                params = {"temperature": 0.9, "top_p": 0.95}
            submit(s, f"g{i}", p, max_new=6 + 2 * i, **params)
        out = run(s)
        outs[gpu_like] = {rid: up.new_ids for rid, up in out.items()}
        assert all(len(outs[gpu_like][f"g{i}"]) == 6 + 2 * i for i in range(6))
        if gpu_like:
            assert s.stats["num_lookahead_steps"] > 0
            assert s.runner.graph_runner.num_replays > 0
            pool = s.runner.req_to_token_pool
            assert pool.device_table is not pool.req_to_token
        assert all_free_rows(s)
    assert outs[True] == outs[False]


def all_free_rows(s: Scheduler) -> bool:
    assert s.flush_cache()
    return s.kv.available() == s.runner.max_total_tokens


def test_spawned_engine_with_overlap_matches_transformers(
    tiny_llama_dir: str, hf_tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler process with overlap on (as on a GPU), a KV pool small enough to retract
    and 64-token prefill chunks: transformers' greedy tokens, every slot back at the end."""
    from radixserve.engine.engine import Engine
    from radixserve.engine.overlap import OVERLAP_ON_CPU_ENV

    from .conftest import hf_greedy
    from .test_engine_e2e import NEW, PROMPTS, greedy

    monkeypatch.setenv(OVERLAP_ON_CPU_ENV, "1")
    reference = [hf_greedy(hf_tiny, p, NEW) for p in PROMPTS]
    with Engine(tiny_llama_dir, dtype="float32", max_total_tokens=360, chunked_prefill_size=64,
                max_running_requests=8, num_threads=1) as eng:  # fmt: skip
        outs = eng.generate(input_ids=PROMPTS, sampling_params=greedy())
        assert [o["output_ids"] for o in outs] == reference
        load = eng.get_load()
        assert load["num_lookahead_steps"] > 0 and load["num_retractions"] > 0
        assert eng.flush_cache()
        load = eng.get_load()
        assert load["kv_available"] == load["kv_size"] == 360
