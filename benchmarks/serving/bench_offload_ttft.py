"""p99 TTFT of 64 concurrent chat requests, chat templating + tokenization on vs off the loop.

    python benchmarks/serving/bench_offload_ttft.py --rounds 2

Starts the server once per (mode, round), interleaved inline/offload/inline/offload, so both
modes see the same machine load:
- inline: every request is templated and tokenized on the HTTP event loop (the server is
  started with engine/offload.py's INLINE_CHARS raised above any input, which is the code path
  before the offload);
- offload: the server as shipped (inputs of INLINE_CHARS characters or more go to the worker
  thread).
The workload isolates the HTTP side: every prompt is one long shared user prefix (about
--prefix-len tokens of text, so templating and tokenizing it costs milliseconds) plus a short
distinct question; one warm-up request puts the prefix in the radix cache, so the burst's
prefill is the short suffixes, not the prefix 64 times. max_tokens = 1: TTFT is the whole
request. Before the runs, the blocking work itself is timed in this process (chat template +
tokenize of one burst prompt, the default model's tokenizer): what one request used to hold
the event loop for. Prints one JSON line per run and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx


def load_bench_serving() -> ModuleType:
    path = Path(__file__).with_name("bench_serving.py")
    spec = importlib.util.spec_from_file_location("bench_serving", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def start_server(mode: str, port: int, max_total_tokens: int) -> subprocess.Popen[bytes]:
    # INLINE_CHARS is read by the serving modules when they are imported: set it first.
    inline = "1 << 62" if mode == "inline" else "o.INLINE_CHARS"
    code = (f"import sys, radixserve.engine.offload as o; o.INLINE_CHARS = {inline}; "
            f"from radixserve.serve import main; "
            f"sys.argv = ['radixserve', '--port', '{port}', '--max-total-tokens', "
            f"'{max_total_tokens}', '--log-level', 'warning']; main()")  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ))  # fmt: skip


async def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {proc.returncode}")
            try:
                if (await c.get("/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError("the server did not become healthy")


async def one_run(bs: ModuleType, args: argparse.Namespace, mode: str, port: int
                  ) -> dict[str, Any]:  # fmt: skip
    proc = start_server(mode, port, args.max_total_tokens)
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base_url, proc, 300)
        load_args = argparse.Namespace(
            base_url=base_url, dataset="shared-prefix", num_prompts=args.num_prompts,
            input_len=args.input_len, prefix_len=args.prefix_len, num_groups=1,
            output_len=1, concurrency=args.num_prompts, request_rate=float("inf"),
            timeout=600.0, seed=args.seed,
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=base_url, timeout=600) as c:
            prompts = await bs.make_prompts(c, load_args)
            warm = prompts[0].rsplit(" ", args.input_len)[0]  # the shared prefix alone
            await bs.run_one(c, "openai-chat", warm, 1)
        row: dict[str, Any] = await bs.run(load_args, "openai-chat", prompts)
        row["mode"] = mode
        row["load_avg_1m"] = os.getloadavg()[0]
        return row
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def loop_cost_ms(prompt: str, repeats: int = 20) -> float:
    """Median ms of chat templating + tokenizing `prompt` (the work the offload moves)."""
    from radixserve.models.default_model import default_model_path
    from radixserve.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(default_model_path())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
        tokenizer.encode(text, add_special_tokens=False)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    bs = load_bench_serving()
    rows = []
    words = " ".join(bs.WORDS[i % len(bs.WORDS)] for i in range(args.prefix_len + args.input_len))
    cost = loop_cost_ms(words)
    print(json.dumps({"loop_cost_ms_per_request": round(cost, 2), "prompt_chars": len(words),
                      "burst_ms": round(cost * args.num_prompts, 1)}), flush=True)  # fmt: skip
    for r in range(args.rounds):
        for mode in ("inline", "offload"):
            row = await one_run(bs, args, mode, args.port)
            row["round"] = r
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--num-prompts", type=int, default=64, help="all sent at once")
    p.add_argument("--prefix-len", type=int, default=1500, help="shared prefix tokens")
    p.add_argument("--input-len", type=int, default=16, help="distinct question tokens")
    p.add_argument("--max-total-tokens", type=int, default=16384)
    p.add_argument("--port", type=int, default=31871)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rows = asyncio.run(amain(args))
    print(f"{'round':<6}{'mode':<9}{'ok':>4}{'dur s':>8}{'TTFT p50':>10}{'p90':>9}{'p99':>9}"
          f"{'load':>6}  (ms)", file=sys.stderr)  # fmt: skip
    for row in rows:
        t = row["ttft_ms"]
        print(f"{row['round']:<6}{row['mode']:<9}{row['completed']:>4}{row['duration_s']:>8.2f}"
              f"{t['p50']:>10.1f}{t['p90']:>9.1f}{t['p99']:>9.1f}{row['load_avg_1m']:>6.1f}",
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
