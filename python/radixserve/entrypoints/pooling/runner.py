"""Run validated pooling inputs through the TokenizerManager (the same scheduler as
generation) and observe them in /metrics.

Each input is its own engine request; all are sent at once so the scheduler batches them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Optional

from prometheus_client import Counter, Histogram

from radixserve.engine.io_struct import EngineError, GenerateOutput, GenerateRequest
from radixserve.engine.sampling_params import SamplingParams
from radixserve.metrics import PREFIX, ServerMetrics

if TYPE_CHECKING:
    from radixserve.engine.tokenizer_manager import TokenizerManager

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PoolingMetrics:
    """radixserve:num_pooling_requests_total{route}, radixserve:pooling_prompt_tokens_total
    and the radixserve:pooling_request_latency_seconds histogram; prompt tokens also count in
    the shared radixserve:prompt_tokens_total."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.m = metrics
        r = metrics.registry
        self.requests = Counter(PREFIX + "num_pooling_requests", "Pooling requests by route",
                                ["model_name", "route"], registry=r)  # fmt: skip
        self.tokens = Counter(PREFIX + "pooling_prompt_tokens", "Prompt tokens of pooling "
                              "requests", ["model_name", "route"], registry=r)  # fmt: skip
        self.latency = Histogram(PREFIX + "pooling_request_latency_seconds",
                                 "Latency of pooling requests (whole HTTP request)",
                                 ["model_name", "route"], buckets=_BUCKETS, registry=r)  # fmt: skip

    def observe(self, route: str, prompt_tokens: int, seconds: float) -> None:
        name = self.m.model_name
        self.requests.labels(name, route).inc()
        self.tokens.labels(name, route).inc(prompt_tokens)
        self.m.prompt_tokens.labels(name).inc(prompt_tokens)
        self.latency.labels(name, route).observe(seconds)


async def _final(tm: TokenizerManager, req: GenerateRequest) -> GenerateOutput:
    last: Optional[GenerateOutput] = None
    async for out in tm.generate(req):
        last = out
    assert last is not None
    if last.finish_reason is not None and last.finish_reason.type == "abort":
        raise EngineError(last.finish_reason.message or "the request was aborted", 503)
    return last


async def run_all(tm: TokenizerManager, reqs: list[GenerateRequest]) -> list[GenerateOutput]:
    """Final outputs in order; on any failure the others are cancelled (and so aborted)."""
    if len(reqs) == 1:  # one input (the usual single sentence): no task to spawn and gather
        return [await _final(tm, reqs[0])]
    tasks = [asyncio.ensure_future(_final(tm, r)) for r in reqs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()


def pooling_request(ids: list[int], types: Optional[list[int]] = None) -> GenerateRequest:
    return GenerateRequest(rid=uuid.uuid4().hex, input_ids=ids, pooling=True,
                           token_type_ids=types)  # fmt: skip


def score_request(ids: list[int], label_ids: list[int]) -> GenerateRequest:
    """One greedy token after the prompt; the scheduler attaches the label logprobs."""
    params = SamplingParams(max_new_tokens=1, temperature=0.0)
    return GenerateRequest(rid=uuid.uuid4().hex, input_ids=ids, sampling_params=params,
                           label_token_ids=label_ids)  # fmt: skip


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
