"""ServerArgs: every flag, its default and its check, in one place.

Flag names follow SGLang's where SGLang has the same knob (`--model-path`, `--port`, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from radixserve.args_help import FLAG_HELP, check_reliability_args

DTYPES = ("auto", "float32", "bfloat16")
KV_CACHE_DTYPES = ("auto", "float32", "bfloat16")
ENCODER_LINEAR_FORMATS = ("auto", "float32", "int16")
SCHEDULE_POLICIES = ("lpm", "fcfs")
CHUNKED_PREFILL_POLICIES = ("fair", "fcfs")
BACKENDS = ("native", "torch")
ATTENTION_BACKENDS = ("native", "torch", "flashinfer")
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Issue #10: structured output, tool calling, reasoning.
GRAMMAR_BACKENDS = ("xgrammar", "none")
TOOL_CALL_PARSERS = ("hermes", "qwen25", "llama3", "mistral", "pythonic")
REASONING_PARSERS = ("deepseek-r1", "qwen3")


@dataclass
class ServerArgs:
    # Model
    model_path: Optional[str] = None  # None: the default model (SmolLM2-135M-Instruct GGUF)
    tokenizer_path: Optional[str] = None
    served_model_name: Optional[str] = None
    dtype: str = "auto"
    # The KV pool's dtype: auto = the model's (bfloat16 for the default model kept quantized);
    # bfloat16 under an fp32 model halves the KV bytes (the kernels read it as fp32; K/V are
    # rounded to nearest even when stored).
    kv_cache_dtype: str = "auto"
    # BERT-family encoder linears: auto = int16 for float32 models on the native CPU kernels
    # (layers/linear.py), float32 as loaded, int16 (12-bit weights, 14-bit activations).
    encoder_linear_format: str = "auto"
    # The encoder's forward in one native call (models/bert.py); off: the per-op modules.
    disable_encoder_stack: bool = False
    # Encoder batches of at most this many tokens run on one thread (0: never).
    encoder_serial_max_tokens: int = 0
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
    # How a step's prefill budget is shared (engine/schedule_policy.py): fair (no prompt holds
    # the whole budget while others wait) or fcfs (the unfinished chunk first, then in order).
    chunked_prefill_policy: str = "fair"
    page_size: int = 1
    schedule_policy: str = "lpm"
    disable_radix_cache: bool = False
    stream_interval: int = 1

    # Kernels
    device: str = "auto"  # auto: cuda when torch sees a GPU and radixserve._C has CUDA kernels
    attention_backend: str = "native"
    kernel_backend: str = "native"  # norm, rope, activation, linear, sampling
    num_threads: Optional[int] = None  # intra-op threads of the scheduler process
    # Decode attention reads a KV prefix shared by several running requests (same slots, e.g. a
    # cached system prompt) once for all of them, when it is at least cascade_min_prefix long.
    disable_cascade_attention: bool = False
    cascade_min_prefix: int = 256
    # Speculative decoding: None or "NGRAM" (prompt-lookup drafts; greedy and sampled requests).
    speculative_algorithm: Optional[str] = None
    speculative_num_draft_tokens: int = 4
    # GPU serving (engine/cuda_graph.py, engine/overlap.py): decode replays CUDA graphs captured
    # at padded batch sizes up to cuda_graph_max_bs; the scheduler prepares step n+1 while the
    # GPU runs step n. Both apply to --device cuda only.
    disable_cuda_graph: bool = False
    cuda_graph_max_bs: Optional[int] = None
    disable_overlap_schedule: bool = False

    # Sessions and /extend (engine/session.py): idle seconds before a session is closed and a
    # conversation forgotten; 0 keeps them until closed or flushed.
    session_idle_timeout: float = 600.0

    # Structured output, tool calling, reasoning (issue #10)
    grammar_backend: str = "xgrammar"  # xgrammar | none (constraints are then refused)
    grammar_cache_size: int = 256  # compiled grammars kept (LRU)
    # Jump-forward: text the grammar forces is appended in one extend step, not decoded token
    # by token (constrained/jump_forward.py); --no-grammar-jump-forward turns it off.
    grammar_jump_forward: bool = True
    tool_call_parser: Optional[str] = None  # hermes | qwen25 | llama3 | mistral | pythonic
    reasoning_parser: Optional[str] = None  # deepseek-r1 | qwen3
    # Pooling models (#8): serve a causal LM for last-token embeddings (BERT and
    # *ForSequenceClassification checkpoints are detected from `architectures`).
    is_embedding: bool = False

    random_seed: int = 0
    watchdog_timeout: float = 300.0

    # Durable store: files, batches, stored responses (issue #9)
    data_dir: Optional[str] = None  # None: $XDG_DATA_HOME/radixserve or ~/.local/share/radixserve
    max_file_size: int = 200 * 1024 * 1024  # bytes of one uploaded file
    batch_concurrency: int = 128  # batch lines in flight at once (they yield to online requests)
    background_prefill_size: int = 64  # prefill tokens of a step that runs only batch lines
    online_recent_window: float = 1.0  # seconds after online work with small batch-only steps
    background_tokens_after_online: int = 4  # tokens of a batch-only step within that window
    # Reliability and limits (see args_help.py for what each does)
    restart_on_crash: bool = True
    request_timeout: Optional[float] = None
    max_queued_requests: Optional[int] = None
    api_key_file: Optional[str] = None
    rate_limit_per_minute: Optional[int] = None
    protect_metrics: bool = False
    disable_metrics: bool = False

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
        choice("kv_cache_dtype", KV_CACHE_DTYPES)
        choice("encoder_linear_format", ENCODER_LINEAR_FORMATS)
        if self.encoder_serial_max_tokens < 0:
            raise ValueError("--encoder-serial-max-tokens must be >= 0, got "
                             f"{self.encoder_serial_max_tokens}")  # fmt: skip
        choice("schedule_policy", SCHEDULE_POLICIES)
        choice("chunked_prefill_policy", CHUNKED_PREFILL_POLICIES)
        choice("attention_backend", ATTENTION_BACKENDS)
        choice("device", DEVICES)
        choice("kernel_backend", BACKENDS)
        choice("log_level", LOG_LEVELS)
        choice("grammar_backend", GRAMMAR_BACKENDS)  # issue #10
        if self.tool_call_parser is not None:
            choice("tool_call_parser", TOOL_CALL_PARSERS)
        if self.reasoning_parser is not None:
            choice("reasoning_parser", REASONING_PARSERS)
        positive = ("max_running_requests", "max_prefill_tokens", "chunked_prefill_size",
                    "page_size", "stream_interval", "max_payload_size",
                    "max_file_size", "batch_concurrency", "background_prefill_size",
                    "background_tokens_after_online", "grammar_cache_size")
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
        if self.cuda_graph_max_bs is not None and self.cuda_graph_max_bs < 1:
            raise ValueError(f"--cuda-graph-max-bs must be >= 1, got {self.cuda_graph_max_bs}")
        if self.cascade_min_prefix < 1:
            raise ValueError(f"--cascade-min-prefix must be >= 1, got {self.cascade_min_prefix}")
        if not 0.0 < self.mem_fraction_static < 1.0:
            raise ValueError(f"--mem-fraction-static must be in (0, 1), got {self.mem_fraction_static}")
        if self.max_total_tokens is not None and self.max_total_tokens < 16:
            raise ValueError(f"--max-total-tokens must be >= 16, got {self.max_total_tokens}")
        if self.context_length is not None and self.context_length < 1:
            raise ValueError(f"--context-length must be >= 1, got {self.context_length}")
        if self.session_idle_timeout < 0:
            raise ValueError(f"--session-idle-timeout must be >= 0, got {self.session_idle_timeout}")
        if self.online_recent_window < 0:
            raise ValueError(f"--online-recent-window must be >= 0, got {self.online_recent_window}")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")
        check_reliability_args(self)

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        for f in dataclasses.fields(ServerArgs):
            if f.name == "extra":
                continue
            flag = "--" + f.name.replace("_", "-")
            default = f.default
            helptext = FLAG_HELP.get(f.name)
            if f.type in ("bool", bool):
                # On-by-default switches also get their --no-... spelling.
                action = argparse.BooleanOptionalAction if default else "store_true"
                parser.add_argument(flag, action=action, default=default, help=helptext)
                continue
            kind: Any = str
            if f.type in ("int", "Optional[int]"):
                kind = int
            elif f.type in ("float", "Optional[float]"):
                kind = float
            parser.add_argument(flag, type=kind, default=default, help=helptext)
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


AttentionBackendName = Literal["native", "torch", "flashinfer"]
