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
    starts = [0] * len(reqs)
    for i in range(1, len(reqs)):
        starts[i] = starts[i - 1] + extend_lens[i - 1]
    return ForwardBatch(
        input_ids=torch.tensor(input_ids, dtype=_I64),
        positions=torch.tensor(positions, dtype=_I64),
        out_cache_loc=out_cache_loc.to(_I64),
        req_pool_indices=torch.tensor(rows, dtype=_I64),
        seq_lens=torch.tensor(seq_lens, dtype=_I64),
        extend_prefix_lens=torch.tensor(prefix_lens, dtype=_I64),
        extend_seq_lens=torch.tensor(extend_lens, dtype=_I64),
        extend_start_loc=torch.tensor(starts, dtype=_I64),
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
    info = SamplingBatchInfo(
        temperatures=torch.tensor(temps, dtype=torch.float32),
        top_ps=torch.tensor(top_ps, dtype=torch.float32),
        top_ks=torch.tensor(top_ks, dtype=torch.int32),
        min_ps=torch.tensor(min_ps, dtype=torch.float32),
        seeds=torch.tensor(seeds, dtype=_I64),
        steps=torch.tensor(steps, dtype=_I64),
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
