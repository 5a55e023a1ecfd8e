"""all-MiniLM-L6-v2 forward of one sequence of T tokens, in process, 2 torch threads: the per-op
modules vs the EncoderStack with its kernels split over the threads vs on one thread (serial),
interleaved in rounds; wall p50 / p10 (us) per T.

    [OMP_WAIT_POLICY=PASSIVE] PYTHONPATH=python python benchmarks/kernels/bench_encoder_threads.py 9,16,32 10
"""

import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from pooling.models import minilm_path  # noqa: E402
from pooling.test_bert_model import ours, packed_batch  # noqa: E402

VARIANTS = {"per-op": (False, 0), "stack split": (True, 0), "stack serial": (True, 1 << 20)}


def main() -> None:
    torch.set_num_threads(2)
    model = ours(minilm_path(), "native", "int16")
    enc = model.encoder
    lengths = [int(x) for x in sys.argv[1].split(",")]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    res: dict[tuple[str, int], list[int]] = {(v, t): [] for v in VARIANTS for t in lengths}
    with torch.inference_mode():
        for _ in range(rounds):
            for t in lengths:
                batch = packed_batch([[101] + [2000 + i for i in range(t - 2)] + [102]])
                for name, (fused, serial_max) in VARIANTS.items():
                    enc.fused, enc.serial_max_tokens = fused, serial_max
                    for _ in range(3):
                        model(batch)
                    for _ in range(10):
                        start = time.perf_counter_ns()
                        model(batch)
                        res[name, t].append(time.perf_counter_ns() - start)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()}")
    for t in lengths:
        cells = []
        for name in VARIANTS:
            xs = sorted(res[name, t])
            cells.append(f"{name}: p50 {statistics.median(xs) / 1e3:.0f} p10 {xs[len(xs) // 10] / 1e3:.0f}")
        print(f"T={t}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
