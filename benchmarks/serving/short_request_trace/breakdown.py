"""Per-piece p50 / mean (us) of the last N requests traced by sitecustomize.py.

    python benchmarks/serving/short_request_trace/breakdown.py FOLDER N
"""

from __future__ import annotations

import glob
import os
import statistics
import sys
from collections.abc import Callable

Req = dict[str, tuple[int, int]]
PIECES: list[tuple[str, Callable[[Req], int]]] = [
    ("HTTP parse -> ASGI app start", lambda r: r["asgi"][0] - r["http_on_url"][0]),
    ("ASGI start -> handler start (routing, body parse, validation)",
     lambda r: r["handler"][0] - r["asgi"][0]),
    ("tokenize", lambda r: r["tokenize"][1] - r["tokenize"][0]),
    ("handler start -> request encoded for the scheduler (tokenize included)",
     lambda r: r["http_encode_req"][0] - r["handler"][0]),
    ("IPC HTTP -> scheduler", lambda r: r["sched_recv"][0] - r["http_encode_req"][0]),
    ("scheduler recv + add_request", lambda r: r["sched_add"][1] - r["sched_recv"][0]),
    ("add_request end -> step start", lambda r: r["sched_step"][0] - r["sched_add"][1]),
    ("step start -> forward start (plan, KV slots, batch)",
     lambda r: r["forward"][0] - r["sched_step"][0]),
    ("encoder forward + pooling (ModelRunner.forward)",
     lambda r: r["forward"][1] - r["forward"][0]),
    ("forward end -> reply encoded (finish_pooled)",
     lambda r: r["sched_send_batchout"][0] - r["forward"][1]),
    ("IPC scheduler -> HTTP", lambda r: r["http_decode_out"][0] - r["sched_send_batchout"][0]),
    ("reply decoded -> handler end (response built)",
     lambda r: r["handler"][1] - r["http_decode_out"][0]),
    ("handler end -> body sent (JSON, middleware)", lambda r: r["asgi_body_send"][0] - r["handler"][1]),
    ("TOTAL: first parse callback -> body sent", lambda r: r["asgi_body_send"][0] - r["http_on_url"][0]),
]  # fmt: skip


def main() -> None:
    events = []
    for path in glob.glob(os.path.join(sys.argv[1], "ev.*.txt")):
        with open(path) as f:
            for line in f:
                name, start, end = line.split()
                events.append((int(start), int(end), name))
    events.sort()
    reqs: list[Req] = []
    for start, end, name in events:  # requests one after another: each starts at http_on_url
        if name == "http_on_url":
            reqs.append({})
        if reqs:
            reqs[-1].setdefault(name, (start, end))
    need = ("asgi", "forward", "sched_send_batchout", "http_decode_out", "asgi_body_send")
    done = [r for r in reqs if all(k in r for k in need)][-int(sys.argv[2]) :]
    print(f"{len(done)} requests\n\n| piece | p50 us | mean us |\n|---|---|---|")
    for name, piece in PIECES:
        xs = [piece(r) / 1e3 for r in done]
        print(f"| {name} | {statistics.median(xs):.0f} | {statistics.mean(xs):.0f} |")


if __name__ == "__main__":
    main()
