"""ServerArgs: every flag, its default and its check, in one place.

Flag names follow SGLang's where SGLang has the same knob (`--model-path`, `--port`, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

DTYPES = ("auto", "float32", "bfloat16")
SCHEDULE_POLICIES = ("lpm", "fcfs")
BACKENDS = ("native", "torch")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass
class ServerArgs:
    # Model
    model_path: Optional[str] = None  # None: the default model (SmolLM2-135M-Instruct GGUF)
    tokenizer_path: Optional[str] = None
    served_model_name: Optional[str] = None
    dtype: str = "auto"
    context_length: Optional[int] = None
    trust_remote_code: bool = False
    revision: Optional[str] = None
    chat_template: Optional[str] = None

    # HTTP
    host: str = "127.0.0.1"
    port: int = 30000
    api_key: Optional[str] = None
    max_payload_size: int = 32 * 1024 * 1024
    enable_metrics: bool = True
    log_level: str = "info"
    log_requests: bool = False

    # Memory and scheduling
    max_total_tokens: Optional[int] = None  # KV pool size in tokens; None: from mem_fraction_static
    mem_fraction_static: float = 0.2  # share of available host memory given to the KV pool
    max_running_requests: int = 64
    max_prefill_tokens: int = 8192
    chunked_prefill_size: int = 512
    page_size: int = 1
    schedule_policy: str = "lpm"
    disable_radix_cache: bool = False
    stream_interval: int = 1

    # Kernels
    attention_backend: str = "native"
    kernel_backend: str = "native"  # norm, rope, activation, linear, sampling
    num_threads: Optional[int] = None  # intra-op threads of the scheduler process
    # Decode attention reads a KV prefix shared by several running requests (same slots, e.g. a
    # cached system prompt) once for all of them, when it is at least cascade_min_prefix long.
    disable_cascade_attention: bool = False
    cascade_min_prefix: int = 256
    # Speculative decoding: None or "NGRAM" (prompt-lookup drafts, greedy requests only).
    speculative_algorithm: Optional[str] = None
    speculative_num_draft_tokens: int = 4

    random_seed: int = 0
    watchdog_timeout: float = 300.0

    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError with a clear message for any inconsistent setting."""

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {options}, got {value!r}")

        choice("dtype", DTYPES)
        choice("schedule_policy", SCHEDULE_POLICIES)
        choice("attention_backend", BACKENDS)
        choice("kernel_backend", BACKENDS)
        choice("log_level", LOG_LEVELS)
        positive = ("max_running_requests", "max_prefill_tokens", "chunked_prefill_size",
                    "page_size", "stream_interval", "max_payload_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.speculative_algorithm is not None:
            self.speculative_algorithm = self.speculative_algorithm.upper()
            if self.speculative_algorithm != "NGRAM":
                raise ValueError(
                    f"--speculative-algorithm must be NGRAM, got {self.speculative_algorithm!r}"
                )
        if self.speculative_num_draft_tokens < 1:
            raise ValueError(
                "--speculative-num-draft-tokens must be >= 1, got "
                f"{self.speculative_num_draft_tokens}"
            )
        if self.cascade_min_prefix < 1:
            raise ValueError(f"--cascade-min-prefix must be >= 1, got {self.cascade_min_prefix}")
        if not 0.0 < self.mem_fraction_static < 1.0:
            raise ValueError(f"--mem-fraction-static must be in (0, 1), got {self.mem_fraction_static}")
        if self.max_total_tokens is not None and self.max_total_tokens < 16:
            raise ValueError(f"--max-total-tokens must be >= 16, got {self.max_total_tokens}")
        if self.context_length is not None and self.context_length < 1:
            raise ValueError(f"--context-length must be >= 1, got {self.context_length}")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        for f in dataclasses.fields(ServerArgs):
            if f.name == "extra":
                continue
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            if f.type in ("bool", bool):
                parser.add_argument(flag, action="store_true", default=default)
                continue
            kind: Any = str
            if f.type in ("int", "Optional[int]"):
                kind = int
            elif f.type in ("float", "Optional[float]"):
                kind = float
            parser.add_argument(flag, type=kind, default=default)
        # SGLang spelling aliases.
        parser.add_argument("--model", dest="model_path", type=str, help=argparse.SUPPRESS)
        parser.add_argument("--tp-size", "--tp", type=int, default=1, dest="tp_size",
                            help="tensor parallelism (only 1 is supported)")

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> ServerArgs:
        if getattr(args, "tp_size", 1) != 1:
            raise ValueError("--tp-size other than 1 is not supported")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in vars(args).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "api_key")}


AttentionBackendName = Literal["native", "torch"]
