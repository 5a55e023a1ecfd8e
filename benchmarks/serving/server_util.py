"""What the HTTP benchmarks share: start a radixserve server on a free port, and the CPU flags
a results file names."""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import time
from typing import Optional

import httpx


def start_server(
    args: list[str], pythonpath: Optional[str] = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m radixserve.serve <args>` on a free port; returns it and its URL once /health
    answers 200 (up to 5 minutes). `pythonpath` replaces PYTHONPATH for the server (another
    tree's package and _C, for an A/B between trees)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "radixserve.serve", "--port", str(port), "--log-level",
           "warning", *args]  # fmt: skip
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def add_variant_args(p: argparse.ArgumentParser, default: str) -> None:
    """--variant LABEL=SERVER ARGS and --pythonpath LABEL=PATH (both repeatable): the servers of
    an A/B, e.g. two trees' packages (the second's python/ through --pythonpath)."""
    p.add_argument("--variant", action="append", default=[],
                   help=f"LABEL=SERVER ARGS (repeat); default: {default}")  # fmt: skip
    p.add_argument("--pythonpath", action="append", default=[],
                   help="LABEL=PATH (repeat): that variant's server runs with PYTHONPATH=PATH, "
                        "e.g. another tree's python/ for an A/B between trees")  # fmt: skip


def start_variants(servers: dict[str, tuple[subprocess.Popen[bytes], str]], variants: list[str],
                   pythonpaths: list[str], common: list[str]) -> None:  # fmt: skip
    """Starts one server per LABEL=ARGS variant (`common` args, then its own) into `servers`,
    so that the caller's `finally` stops the ones that started if a later one fails."""
    paths = dict(v.split("=", 1) for v in pythonpaths)
    for v in variants:
        label, extra = v.split("=", 1)
        servers[label] = start_server([*common, *shlex.split(extra)], paths.get(label))


def variant_flags(variants: list[str], pythonpaths: list[str]) -> str:
    """The --variant / --pythonpath part of a results file's command line."""
    return " ".join(f"--variant {shlex.quote(v)}" for v in variants) + "".join(
        f" --pythonpath {shlex.quote(v)}" for v in pythonpaths
    )


def cpu_flags() -> str:
    """The SIMD flags that pick a kernel build (avx2 / avx512...) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next(ln for ln in f if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    keep = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "amx_tile")
    return " ".join(f for f in keep if f in flags) or "none of avx2/avx512"
