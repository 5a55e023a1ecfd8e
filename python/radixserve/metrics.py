"""Prometheus collectors of the HTTP server (a registry of our own, not the global one).

Names follow SGLang's (`sglang:prompt_tokens_total`, ...) with the `radixserve:` prefix.
Per-request figures (tokens, TTFT, inter-token latency, e2e latency) are observed by the
serving layer as outputs stream by; load figures (running/waiting requests, KV usage, prefix
cache hit rate) are gauges refreshed from `TokenizerManager.get_load()` at scrape time.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "radixserve:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
)  # fmt: skip
# Whole HTTP requests, from arrival to the last byte handed to the server: fine at the low end,
# where a short embedding request lands (the 5 ms aim of benchmarks/serving/bench_embeddings.py).
_HTTP_BUCKETS = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 0.75, 1.0, 2.0, 5.0,
)  # fmt: skip


class ServerMetrics:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        r, labels = self.registry, ["model_name"]
        self.requests = Counter(
            PREFIX + "num_http_requests", "HTTP requests by route and status",
            ["route", "status"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            PREFIX + "http_request_duration_seconds", "HTTP requests from arrival to the last "
            "response byte sent, by route", ["route"], buckets=_HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            PREFIX + "prompt_tokens", "Prompt tokens processed", labels, registry=r
        )
        self.generation_tokens = Counter(
            PREFIX + "generation_tokens", "Tokens generated", labels, registry=r
        )
        self.cached_tokens = Counter(
            PREFIX + "cached_tokens", "Prompt tokens served from the prefix cache", labels,
            registry=r,
        )  # fmt: skip
        self.finished = Counter(
            PREFIX + "num_requests", "Generation requests finished, by finish reason",
            ["model_name", "finish_reason"], registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            PREFIX + "time_to_first_token_seconds", "Time to first token", labels,
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            PREFIX + "inter_token_latency_seconds", "Time between output tokens", labels,
            buckets=_ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.e2e = Histogram(
            PREFIX + "e2e_request_latency_seconds", "End-to-end request latency", labels,
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.running = Gauge(PREFIX + "num_running_reqs", "Running requests", labels, registry=r)
        self.waiting = Gauge(PREFIX + "num_queue_reqs", "Waiting requests", labels, registry=r)
        self.token_usage = Gauge(
            PREFIX + "token_usage", "Share of the KV pool in use (0..1)", labels, registry=r
        )
        self.used_tokens = Gauge(PREFIX + "num_used_tokens", "KV slots in use", labels, registry=r)
        self.cache_hit_rate = Gauge(
            PREFIX + "cache_hit_rate", "Prefix cache hit rate (cached / prompt tokens)", labels,
            registry=r,
        )  # fmt: skip

        # Engine faults (the scheduler survives a failing step; the HTTP side restarts a dead
        # scheduler). Step errors count since the scheduler's last start.
        self.step_errors = Gauge(
            PREFIX + "num_step_errors", "Scheduler steps that raised (their requests failed)",
            labels, registry=r,
        )  # fmt: skip
        self.restarts = Gauge(
            PREFIX + "num_scheduler_restarts", "Times the scheduler process was restarted",
            labels, registry=r,
        )  # fmt: skip

        # Speculative decoding (counts since the scheduler's last start; 0 when not speculating).
        self.spec_draft_tokens = Gauge(
            PREFIX + "spec_draft_tokens", "Speculative draft tokens proposed", labels, registry=r
        )
        self.spec_accepted_tokens = Gauge(
            PREFIX + "spec_accepted_tokens", "Speculative draft tokens accepted", labels,
            registry=r,
        )  # fmt: skip
        self.spec_accept_rate = Gauge(
            PREFIX + "spec_accept_rate", "Accepted / proposed speculative draft tokens",
            labels, registry=r,
        )  # fmt: skip

    def count_request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def observe_duration(self, route: str, seconds: float) -> None:
        self.request_duration.labels(route).observe(seconds)

    def refresh_load(self, load: dict[str, Any]) -> None:
        m = self.model_name
        self.running.labels(m).set(load.get("num_running_reqs", 0))
        self.waiting.labels(m).set(load.get("num_waiting_reqs", 0))
        self.token_usage.labels(m).set(load.get("token_usage", 0.0))
        self.used_tokens.labels(m).set(load.get("num_used_tokens", 0))
        self.cache_hit_rate.labels(m).set(load.get("cache_hit_rate", 0.0))
        self.step_errors.labels(m).set(load.get("num_step_errors", 0))
        self.restarts.labels(m).set(load.get("num_scheduler_restarts", 0))
        drafts = load.get("num_spec_draft_tokens", 0)
        accepted = load.get("num_spec_accepted_tokens", 0)
        self.spec_draft_tokens.labels(m).set(drafts)
        self.spec_accepted_tokens.labels(m).set(accepted)
        self.spec_accept_rate.labels(m).set(accepted / drafts if drafts else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def tracker(self, start: Optional[float] = None) -> RequestTracker:
        return RequestTracker(self, start)


class RequestTracker:
    """Observes one generation request: call `update()` per output, `finish()` at the end."""

    __slots__ = ("_m", "_start", "_last", "_tokens")

    def __init__(self, metrics: ServerMetrics, start: Optional[float] = None) -> None:
        self._m = metrics
        self._start = self._last = time.perf_counter() if start is None else start
        self._tokens = 0

    def update(self, completion_tokens: int) -> None:
        new = completion_tokens - self._tokens
        if new <= 0:
            return
        now = time.perf_counter()
        name = self._m.model_name
        if self._tokens == 0:
            self._m.ttft.labels(name).observe(now - self._start)
        else:
            # One update may carry several tokens (stream_interval): spread the gap over them.
            gap = (now - self._last) / new
            itl = self._m.itl.labels(name)
            for _ in range(new):
                itl.observe(gap)
        self._last = now
        self._tokens = completion_tokens

    def finish(self, prompt_tokens: int, cached_tokens: int, reason: str) -> None:
        m, name = self._m, self._m.model_name
        m.prompt_tokens.labels(name).inc(prompt_tokens)
        m.cached_tokens.labels(name).inc(cached_tokens)
        m.generation_tokens.labels(name).inc(self._tokens)
        m.e2e.labels(name).observe(time.perf_counter() - self._start)
        m.finished.labels(name, reason).inc()
