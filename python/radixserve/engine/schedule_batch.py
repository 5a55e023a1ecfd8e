"""Turn the requests of one step into a ForwardBatch and a SamplingBatchInfo.

Request i feeds `fill_ids[kv_len : kv_len + extend_len]` (a decode feeds one token); its new
tokens get KV slots `out_cache_loc[...]`, written into its req_to_token row here, before the
forward, because attention reads every key (new ones included) through that row.
"""

from __future__ import annotations

import torch

from radixserve.engine.kv_manager import KVManager
from radixserve.engine.penalty_state import logit_bias, output_token_counts, uses_penalty
from radixserve.engine.request import Req
from radixserve.forward_batch import ForwardBatch
from radixserve.layers.sampling_info import SamplingBatchInfo

_I64 = torch.int64


def build_forward_batch(
    reqs: list[Req], out_cache_loc: torch.Tensor, kv: KVManager
) -> ForwardBatch:
    input_ids: list[int] = []
    positions: list[int] = []
    prefix_lens: list[int] = []
    extend_lens: list[int] = []
    seq_lens: list[int] = []
    rows: list[int] = []
    offset = 0
    for req in reqs:
        start, n = req.kv_len, req.extend_len
        input_ids.extend(req.tokens(start, n))
        positions.extend(range(start, start + n))
        kv.write_slots(req, start, out_cache_loc[offset : offset + n])
        offset += n
        assert req.req_pool_idx is not None
        rows.append(req.req_pool_idx)
        prefix_lens.append(start)
        extend_lens.append(n)
        seq_lens.append(start + n)
    bs = len(reqs)
    starts = [0] * bs
    for i in range(1, bs):
        starts[i] = starts[i - 1] + extend_lens[i - 1]
    # One tensor for the eight int64 vectors (views into it): a step's tensor constructions are
    # a measurable part of a 1-request decode step (benchmarks/results/decode_default_model.md).
    t = len(input_ids)
    packed = torch.tensor(
        input_ids + positions + rows + seq_lens + prefix_lens + extend_lens + starts, dtype=_I64
    )
    sizes = [t, t, bs, bs, bs, bs, bs]
    ids_, pos_, rows_, seq_, prefix_, ext_, starts_ = packed.split_with_sizes(sizes)
    return ForwardBatch(
        input_ids=ids_,
        positions=pos_,
        out_cache_loc=out_cache_loc.to(_I64),
        req_pool_indices=rows_,
        seq_lens=seq_,
        extend_prefix_lens=prefix_,
        extend_seq_lens=ext_,
        extend_start_loc=starts_,
        is_decode=all(n == 1 for n in extend_lens) and all(r.output_ids for r in reqs),
        seq_lens_list=seq_lens,
        extend_seq_lens_list=extend_lens,
        extend_prefix_lens_list=prefix_lens,
    )


def build_sampling_info(reqs: list[Req], vocab_size: int) -> SamplingBatchInfo:
    temps, top_ps, top_ks, min_ps, seeds, steps = [], [], [], [], [], []
    for r in reqs:
        p = r.params
        greedy = p.is_greedy
        temps.append(0.0 if greedy else p.temperature)
        top_ps.append(p.top_p)
        top_ks.append(1 if greedy else p.normalized_top_k(vocab_size))
        min_ps.append(p.min_p)
        seeds.append(r.seed)
        steps.append(len(r.output_ids))
    floats = torch.tensor([temps, top_ps, min_ps], dtype=torch.float32)  # one tensor, row views
    longs = torch.tensor([seeds, steps], dtype=_I64)
    info = SamplingBatchInfo(
        temperatures=floats[0],
        top_ps=floats[1],
        top_ks=torch.tensor(top_ks, dtype=torch.int32),
        min_ps=floats[2],
        seeds=longs[0],
        steps=longs[1],
        is_all_greedy=all(t == 0.0 for t in temps),
    )
    if any(uses_penalty(r) for r in reqs):
        info.frequency_penalties = torch.tensor(
            [r.params.frequency_penalty for r in reqs], dtype=torch.float32
        )
        info.presence_penalties = torch.tensor(
            [r.params.presence_penalty for r in reqs], dtype=torch.float32
        )
        info.repetition_penalties = torch.tensor(
            [r.params.repetition_penalty for r in reqs], dtype=torch.float32
        )
        info.output_token_counts = output_token_counts(reqs, vocab_size)  # incremental
    bias = logit_bias(reqs, vocab_size)
    if bias is not None:
        info.logit_bias = bias
    if any(r.return_logprob for r in reqs):
        info.return_logprob = True
        info.top_logprobs_nums = [r.top_logprobs_num if r.return_logprob else 0 for r in reqs]
    return info
