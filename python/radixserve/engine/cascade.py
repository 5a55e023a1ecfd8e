"""Shared-prefix (cascade) grouping of a decode batch.

Requests whose req_to_token rows hold the same KV slots for a leading span (their prompts start
with the same text, matched in the radix cache at admission) are put in one group; the native
decode kernel (`_C.cascade_decode_attention`) then reads that span's KV once for the whole
group instead of once per request. Only the part of a row that belongs to the radix tree
(`Req.prefix_len`) can be shared: the rest are the request's own slots.

Grouping: candidates are requests with `prefix_len >= min_prefix`, keyed by the slot at position
`min_prefix - 1` (a slot holds one token of one tree path, so equal slots there mean the same
path up to it); a group's shared length is the longest common slot prefix of its rows, capped
by the members' `prefix_len`. Groups of one, or sharing less than `min_prefix`, are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Protocol

import torch

from radixserve.forward_batch import CascadeGroups


class _DecodeReq(Protocol):
    req_pool_idx: Optional[int]
    prefix_len: int


def shared_prefix_groups(
    reqs: Sequence[_DecodeReq], req_to_token: torch.Tensor, min_prefix: int
) -> Optional[CascadeGroups]:
    """The cascade groups of a decode batch, or None when no two requests share enough."""
    if min_prefix < 1 or len(reqs) < 2:
        return None
    by_key: dict[int, list[int]] = {}
    for i, r in enumerate(reqs):
        if r.req_pool_idx is None or r.prefix_len < min_prefix:
            continue
        key = int(req_to_token[r.req_pool_idx, min_prefix - 1])
        by_key.setdefault(key, []).append(i)
    group_ids = [-1] * len(reqs)
    prefix_lens: list[int] = []
    for members in by_key.values():
        if len(members) < 2:
            continue
        cap = min(reqs[i].prefix_len for i in members)
        rows = torch.tensor([reqs[i].req_pool_idx for i in members], dtype=torch.int64)
        slots = req_to_token[rows, :cap]
        same = (slots == slots[0:1]).all(dim=0)
        diff = (~same).nonzero()
        shared = int(diff[0, 0]) if diff.numel() else cap
        if shared < min_prefix:
            continue
        for i in members:
            group_ids[i] = len(prefix_lens)
        prefix_lens.append(shared)
    if not prefix_lens:
        return None
    return CascadeGroups(
        group_ids=torch.tensor(group_ids, dtype=torch.int64),
        prefix_lens=torch.tensor(prefix_lens, dtype=torch.int64),
    )
