"""Summarise RADIXSERVE_STEP_PHASES files: median wall and thread-CPU ms per phase.

    python benchmarks/serving/step_phases/report.py a.jsonl [b.jsonl ...]
"""

from __future__ import annotations

import json
import statistics
import sys


def main() -> None:
    for path in sys.argv[1:]:
        rows = [json.loads(line) for line in open(path)]
        if not rows:
            print(path, "no decode steps")
            continue
        print(f"{path}: {len(rows)} decode steps (median ms: wall / thread CPU)")
        total_w = total_c = 0.0
        for name in rows[0]:
            w = statistics.median(r[name][0] for r in rows) / 1e6
            c = statistics.median(r[name][1] for r in rows) / 1e6
            total_w, total_c = total_w + w, total_c + c
            print(f"  {name:10s} {w:8.3f} {c:8.3f}")
        step_w = statistics.median(sum(v[0] for v in r.values()) for r in rows) / 1e6
        step_c = statistics.median(sum(v[1] for v in r.values()) for r in rows) / 1e6
        print(f"  {'step':10s} {step_w:8.3f} {step_c:8.3f}  (median of the per-step sums)")


if __name__ == "__main__":
    main()
