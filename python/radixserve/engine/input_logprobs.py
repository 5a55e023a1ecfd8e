"""Input-token logprobs (SGLang's logprob_start_len): logits at prompt positions, chunk by chunk.

The logits at position p score prompt token p + 1, so a request wanting logprobs for prompt
positions from s = max(logprob_start_len, 1) on needs the logits of positions s - 1 .. n - 2
(n: prompt length). Each step asks the model for those of them among its new tokens, besides
the usual last-token row per request used for sampling. Values are log_softmax of the raw
float32 logits, top alternatives ordered by (logit desc, id asc), as for output logprobs.
"""

from __future__ import annotations

import torch

from radixserve.engine.request import Req
from radixserve.forward_batch import ForwardBatch

Span = tuple[Req, int, int, int]  # (request, first logits row, number of rows, first position)


def input_logits_rows(batch: list[Req], fb: ForwardBatch) -> tuple[torch.Tensor, list[Span]] | None:
    """Set fb.logits_indices when some request of the batch needs input logprobs in this step.

    Returns (the rows of the logits holding each request's last token, for sampling, and the
    spans of input-logprob rows), or None when only the last tokens are needed.
    """
    ranges = [r.input_lp_positions() for r in batch]
    if all(lo == hi for lo, hi in ranges):
        return None
    indices: list[int] = []
    sample_rows: list[int] = []
    spans: list[Span] = []
    offset = 0
    for req, (lo, hi) in zip(batch, ranges, strict=True):
        if hi > lo:
            spans.append((req, len(indices), hi - lo, lo))
            indices.extend(range(offset + lo - req.kv_len, offset + hi - req.kv_len))
        offset += req.extend_len
        sample_rows.append(len(indices))
        indices.append(offset - 1)
    fb.logits_indices = torch.tensor(indices, dtype=torch.int64)
    return torch.tensor(sample_rows, dtype=torch.int64), spans


def collect_input_logprobs(logits: torch.Tensor, spans: list[Span]) -> None:
    """Append each span's logprobs (and top alternatives) to its request."""
    for req, row, n, pos in spans:
        rows = logits[row : row + n].float()
        logsm = torch.log_softmax(rows, dim=-1)
        targets = torch.tensor(req.origin_input_ids[pos + 1 : pos + 1 + n], dtype=torch.int64)
        req.input_logprobs.extend(logsm.gather(1, targets[:, None])[:, 0].tolist())
        k = req.top_logprobs_num
        if k > 0:
            top_ids = torch.sort(rows, dim=-1, descending=True, stable=True).indices[:, :k]
            req.input_top_ids.extend(top_ids.tolist())
            req.input_top_logprobs.extend(logsm.gather(1, top_ids).tolist())
