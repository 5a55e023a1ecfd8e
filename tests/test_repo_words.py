"""Source, docs and results refer only to what is in the repository (no outside documents)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("python", "docs", "benchmarks", "tests", "tools", "csrc", "README.md")
SUFFIXES = {".py", ".md", ".sh", ".cpp", ".h", ".cu", ".cuh", ".toml", ".txt"}
# Pointers to documents that are not in the repository: a sibling folder, a workspace path,
# a planning document's numbering, "the task" or "the brief" a reader never saw.
OUTSIDE = re.compile(r"\.\./shared/|/work/|\bSeed \d{3}\b|\bthe (task|brief)\b", re.IGNORECASE)
# Peer comparisons name the harness that builds and drives the peer servers (llama.cpp), which is
# kept beside the repository with those builds; the file says so.
EXEMPT = {
    "benchmarks/results/peers_default_model.md",
    "benchmarks/results/peers_bf16_model.md",
    "benchmarks/results/decode_default_model.md",
}


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        files.extend([path] if path.is_file() else
                     [p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES])  # fmt: skip
    return [f for f in files
            if f != Path(__file__).resolve() and str(f.relative_to(ROOT)) not in EXEMPT]


def test_no_pointers_outside_the_repository() -> None:
    hits = [
        f"{f.relative_to(ROOT)}:{i}: {line.strip()}"
        for f in scanned_files()
        for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_the_pattern_finds_a_pointer() -> None:
    assert OUTSIDE.search("Read `../shared/DESIGN.md` first")
    assert OUTSIDE.search('"""Seed 003\'s shape"""')
    assert not OUTSIDE.search("SGLang's /health is only liveness")
