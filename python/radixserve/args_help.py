"""One-line help for every ServerArgs flag, and the checks of the reliability/limit flags.

Kept beside args.py (not in field metadata) so that adding a flag stays a one-line change to
ServerArgs plus one line here; tests/test_args.py fails for a flag without help.
"""

from __future__ import annotations

import os
from typing import Any

FLAG_HELP: dict[str, str] = {
    "model_path": "HF folder or GGUF file of the model (default: SmolLM2-135M-Instruct GGUF).",
    "tokenizer_path": "Tokenizer folder or name, when it differs from --model-path.",
    "served_model_name": "Model id reported by /v1/models and in responses.",
    "dtype": "Weight and activation dtype: auto, float32 or bfloat16.",
    "kv_cache_dtype": (
        "KV cache dtype: auto (the model's; bfloat16 for a GGUF kept quantized), "
        "float32 or bfloat16 (half an fp32 model's KV memory; CPU only if not the model's dtype)."
    ),
    "encoder_linear_format": (
        "Encoder (BERT) linears: auto (int16 for float32 models on the native CPU kernels), "
        "float32, or int16 (12-bit integer weights, 14-bit activations, int32 sums)."
    ),
    "disable_encoder_stack": (
        "Run the encoder (BERT) forward op by op in Python instead of in one native call."
    ),
    "encoder_serial_max_tokens": (
        "Encoder batches of at most this many tokens always run on one thread, without OpenMP "
        "(default 0: short ones fall back to one thread only while the host is busy)."
    ),
    "context_length": "Override the model's context length (tokens).",
    "trust_remote_code": "Not supported: only built-in architectures run (setting it is an error).",
    "revision": "Not supported: models are loaded from local paths (setting it is an error).",
    "chat_template": "Jinja chat template (a file path or the template text itself).",
    "host": "Address to listen on.",
    "port": "Port to listen on.",
    "api_key": "Require `Authorization: Bearer <key>` on every route but health/metrics.",
    "max_payload_size": "Largest accepted request body, in bytes.",
    "enable_metrics": "Serve Prometheus metrics at /metrics (see --disable-metrics).",
    "log_level": "Logging level: debug, info, warning, error or critical.",
    "log_requests": "Log every HTTP request (uvicorn access log).",
    "max_total_tokens": "KV pool size in tokens (default: from --mem-fraction-static).",
    "mem_fraction_static": "Share of available host memory given to the KV pool, in (0, 1).",
    "max_running_requests": "Most requests decoding at once.",
    "max_prefill_tokens": "Most prompt tokens prefilled in one step.",
    "chunked_prefill_size": "Longest prefill chunk, in tokens.",
    "page_size": "KV page size in tokens (only 1 is supported by the scheduler).",
    "chunked_prefill_policy": "Sharing of a step's prefill budget: fair (round-robin) or fcfs.",
    "schedule_policy": "Order of waiting requests: lpm (longest prefix match) or fcfs.",
    "disable_radix_cache": "Do not reuse KV of shared prefixes.",
    "stream_interval": "Stream an update every this many tokens.",
    "attention_backend": "Attention kernels: native (C++/CUDA), torch (SDPA reference) or flashinfer (CUDA, when installed).",
    "device": "Where the model, KV pool and sampling run: auto (cuda when a GPU and the CUDA kernels exist), cpu or cuda.",
    "disable_cuda_graph": "CUDA only: run decode eagerly instead of replaying CUDA graphs captured at padded batch sizes.",
    "cuda_graph_max_bs": "Largest decode batch replayed as a CUDA graph (default: --max-running-requests, at most 256).",
    "disable_overlap_schedule": "CUDA only: prepare each step after the previous one finished instead of while the GPU runs it.",
    "kernel_backend": "Norm/rope/activation/linear/sampling kernels: native (C++) or torch.",
    "num_threads": "Intra-op threads of the scheduler process (default: all cores).",
    "random_seed": "Seed of the scheduler's random generators.",
    "watchdog_timeout": "Seconds to wait for the scheduler to load the model.",
    "restart_on_crash": "Restart the scheduler process if it dies (--no-restart-on-crash: don't).",
    "request_timeout": "Abort a generation request after this many seconds (504 to the caller).",
    "max_queued_requests": "Reject requests (503, Retry-After) beyond this many waiting ones.",
    "api_key_file": "File with one accepted API key per line (with or without --api-key).",
    "rate_limit_per_minute": "Requests per minute per API key (per client address without keys).",
    "protect_metrics": "Require the API key on /health, /health_generate and /metrics too.",
    "disable_metrics": "Do not serve /metrics and do not collect request metrics.",
    # Flags of parts developed in parallel (sessions, durable store), listed so that they
    # have help once merged; an entry for a flag that does not exist is harmless.
    "session_idle_timeout": "Close sessions idle for this many seconds (0: never).",
    "data_dir": "Folder of the durable store: files, batches, stored responses.",
    "max_file_size": "Largest uploaded file, in bytes.",
    "batch_concurrency": "Batch lines in flight at once; they run only while no online request "
    "waits or runs (online requests preempt them).",
    "background_prefill_size": "Prompt tokens prefilled per step while only batch lines run: "
    "an online request arriving then waits for at most that step.",
    "online_recent_window": "Seconds after the last online step during which steps of batch "
    "lines only stay small (0: never): a client's next request often follows its last reply.",
    "background_tokens_after_online": "Tokens (decode rows + prefill) of a batch-only step "
    "within --online-recent-window, rows taken in turn.",
    "grammar_backend": "Structured-output backend: xgrammar, or none (constraints refused).",
    "grammar_cache_size": "Compiled grammars kept (LRU).",
    "grammar_jump_forward": "Append grammar-forced text in one extend step instead of decoding it "
    "token by token (--no-grammar-jump-forward: decode it).",
    "tool_call_parser": "Tool-call format: hermes, qwen25, llama3, mistral or pythonic.",
    "reasoning_parser": "Reasoning-content format: deepseek-r1 or qwen3.",
    "is_embedding": "Serve a causal LM as a last-token embedding model.",
    "disable_cascade_attention": "Turn off cascade attention (shared-prefix KV read once per decode batch).",
    "cascade_min_prefix": "Shortest shared prefix (tokens) that decodes with cascade attention.",
    "speculative_algorithm": "Speculative decoding: NGRAM (prompt lookup; greedy and sampled requests).",
    "speculative_num_draft_tokens": "Most draft tokens per request per verify step (fewer or none when its acceptance does not pay).",
}


def read_api_keys(path: str) -> list[str]:
    """Non-empty, stripped lines of the key file; `#` starts a comment line."""
    with open(path, encoding="utf-8") as f:
        keys = [ln.strip() for ln in f]
    return [k for k in keys if k and not k.startswith("#")]


def check_reliability_args(args: Any) -> None:
    """Raise ValueError for values the server cannot honour."""
    if args.trust_remote_code:
        raise ValueError(
            "--trust-remote-code is not supported: radixserve runs only its built-in model "
            "architectures and never executes code shipped with a checkpoint"
        )
    if args.revision is not None:
        raise ValueError(
            "--revision is not supported: radixserve loads models from a local folder or file "
            "(download the revision you want and pass its path as --model-path)"
        )
    if args.request_timeout is not None and not args.request_timeout > 0:
        raise ValueError(f"--request-timeout must be > 0 seconds, got {args.request_timeout}")
    if args.max_queued_requests is not None and args.max_queued_requests < 0:
        raise ValueError(f"--max-queued-requests must be >= 0, got {args.max_queued_requests}")
    if args.rate_limit_per_minute is not None and args.rate_limit_per_minute < 1:
        raise ValueError(f"--rate-limit-per-minute must be >= 1, got {args.rate_limit_per_minute}")
    if args.api_key_file is not None:
        if not os.path.isfile(args.api_key_file):
            raise ValueError(f"--api-key-file {args.api_key_file!r} is not a file")
        if not read_api_keys(args.api_key_file):
            raise ValueError(f"--api-key-file {args.api_key_file!r} holds no key")
    if args.disable_metrics:
        args.enable_metrics = False
