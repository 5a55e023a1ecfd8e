"""Sampler: logits -> next tokens (+ logprobs), native kernel or the plain-PyTorch reference.

Both implementations follow one definition (spelled out in csrc/cpu/sampling.cpp), so they pick
the same token for the same (seed, step):

1. penalties on tokens with count > 0: repetition (l > 0 ? l / r : l * r), then frequency
   (l - f * count), then presence (l - p); then l + logit_bias (-inf masks a token); then -inf
   where the packed token_bitmask (a grammar's, bit t % 32 of word t // 32) clears token t.
2. temperature 0: argmax (first maximum).
3. z = l / T, e = exp(z - max z); tokens ordered by (z desc, id asc); position j is kept while
   j < top_k, exclusive-cumsum(e) < top_p * sum(e) (when top_p < 1) and e >= min_p (when
   min_p > 0); position 0 is always kept.
4. the kept weights are walked in token-id order, in blocks of SAMPLE_BLOCK (float64 block
   sums of 8 sequential strided lanes, sequential sums over blocks and inside the chosen block),
   to the first token whose cumulative weight exceeds u * total, where u is the counter-based
   uniform of (seed, step) (splitmix64, see `uniforms`).
5. logprobs are log_softmax of the raw logits (before penalties, bias and temperature), as
   SGLang returns them; top ids ordered by (logit desc, id asc).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radixserve.layers.backend import device_op, use_native
from radixserve.layers.sampling_info import SampleOutput, SamplingBatchInfo

SAMPLE_BLOCK = 512  # csrc/cpu/sampling.h kSampleBlock
_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def uniform(seed: int, step: int) -> float:
    """The draw of (seed, step) in [0, 1): splitmix64(splitmix64(seed) ^ step) >> 11, / 2**53."""
    return (_splitmix64(_splitmix64(seed & _M64) ^ (step & _M64)) >> 11) * 2.0**-53


def uniforms(seeds: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    return torch.tensor(
        [uniform(a, b) for a, b in zip(seeds.tolist(), steps.tolist(), strict=True)],
        dtype=torch.float64,
        device=seeds.device,
    )


def check_inputs(logits: torch.Tensor, info: SamplingBatchInfo) -> None:
    """Raise ValueError for inputs the sampler cannot take (both implementations).

    Logits may be on any device; `info` is checked where it is (the host, before
    `Sampler.forward` moves it next to the logits), so device logits cost no sync here.
    """
    if logits.dim() != 2 or logits.dtype != torch.float32:
        raise ValueError(
            f"logits must be a float32 tensor [bs, vocab], got {logits.dtype} "
            f"{tuple(logits.shape)} on {logits.device}"
        )
    bs, vocab = logits.shape
    if vocab == 0:
        raise ValueError("logits must have a non-empty vocabulary dimension")
    vectors = {
        "temperatures": (info.temperatures, torch.float32),
        "top_ps": (info.top_ps, torch.float32),
        "top_ks": (info.top_ks, torch.int32),
        "min_ps": (info.min_ps, torch.float32),
        "seeds": (info.seeds, torch.int64),
        "steps": (info.steps, torch.int64),
        "frequency_penalties": (info.frequency_penalties, torch.float32),
        "presence_penalties": (info.presence_penalties, torch.float32),
        "repetition_penalties": (info.repetition_penalties, torch.float32),
    }
    for name, (t, dtype) in vectors.items():
        if t is not None and (t.shape != (bs,) or t.dtype != dtype):
            raise ValueError(f"{name} must be {dtype} [{bs}], got {t.dtype} {tuple(t.shape)}")
    for name, mat, dtype in (
        ("output_token_counts", info.output_token_counts, torch.int32),
        ("logit_bias", info.logit_bias, torch.float32),
    ):
        if mat is not None and (mat.shape != (bs, vocab) or mat.dtype != dtype):
            raise ValueError(
                f"{name} must be {dtype} [{bs}, {vocab}], got {mat.dtype} {tuple(mat.shape)}"
            )
    mask = info.token_bitmask
    words = (vocab + 31) // 32
    if mask is not None and (mask.shape != (bs, words) or mask.dtype != torch.int32):
        raise ValueError(
            f"token_bitmask must be torch.int32 [{bs}, {words}], got {mask.dtype} {tuple(mask.shape)}"
        )
    pens = (info.frequency_penalties, info.presence_penalties, info.repetition_penalties)
    if any(p is not None for p in pens) and info.output_token_counts is None:
        raise ValueError("penalties need output_token_counts")
    t = info.temperatures
    if not bool((torch.isfinite(t) & (t >= 0)).all()):
        raise ValueError(f"temperatures must be finite and >= 0, got {t.tolist()}")
    if info.is_all_greedy and not bool((t == 0).all()):
        raise ValueError("is_all_greedy is set but some temperatures are not 0")
    if not bool(((info.top_ps > 0) & (info.top_ps <= 1)).all()):
        raise ValueError(f"top_ps must be in (0, 1], got {info.top_ps.tolist()}")
    if not bool(((info.min_ps >= 0) & (info.min_ps <= 1)).all()):
        raise ValueError(f"min_ps must be in [0, 1], got {info.min_ps.tolist()}")
    if not bool((info.top_ks >= 1).all()):
        raise ValueError(f"top_ks must be >= 1, got {info.top_ks.tolist()}")
    rep = info.repetition_penalties
    if rep is not None and not bool((torch.isfinite(rep) & (rep > 0)).all()):
        raise ValueError(f"repetition_penalties must be > 0, got {rep.tolist()}")
    for p in pens[:2]:
        if p is not None and not bool(torch.isfinite(p).all()):
            raise ValueError("frequency/presence penalties must be finite")
    top_n = _top_n(info)
    if top_n > vocab:
        raise ValueError(f"top_logprobs_nums ({top_n}) exceeds the vocabulary size {vocab}")


def _top_n(info: SamplingBatchInfo) -> int:
    """-1: no logprobs; else the number of top alternatives every row gets."""
    if not info.return_logprob:
        return -1
    nums = info.top_logprobs_nums or [0]
    if min(nums) < 0:
        raise ValueError(f"top_logprobs_nums must be >= 0, got {nums}")
    return max(nums)


def unpack_bitmask(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """A packed int32 token bitmask [bs, ceil(vocab / 32)] -> bool [bs, vocab] (True: allowed)."""
    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask[:, :, None] >> shifts) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab].bool()


def penalised_logits(logits: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """Step 1: penalties (tokens with count > 0), logit bias, then the grammar masks."""
    out = logits
    counts = info.output_token_counts
    if counts is not None:
        seen = counts > 0
        if info.repetition_penalties is not None:
            r = info.repetition_penalties[:, None]
            out = torch.where(seen, torch.where(out > 0, out / r, out * r), out)
        if info.frequency_penalties is not None:
            out = torch.where(seen, out - info.frequency_penalties[:, None] * counts.float(), out)
        if info.presence_penalties is not None:
            out = torch.where(seen, out - info.presence_penalties[:, None], out)
    if info.logit_bias is not None:
        out = out + info.logit_bias
    if info.token_bitmask is not None:
        allowed = unpack_bitmask(info.token_bitmask, logits.shape[1])
        out = out.masked_fill(~allowed, float("-inf"))
    return out


def _kept_weights(z: torch.Tensor, e: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """Step 3: e on the kept tokens, 0 elsewhere (float64)."""
    vocab = z.shape[1]
    order = torch.sort(z, dim=-1, descending=True, stable=True).indices
    e_sorted = e.gather(1, order)
    cums = torch.cumsum(e_sorted.double(), dim=-1)
    excl = torch.cat([torch.zeros_like(cums[:, :1]), cums[:, :-1]], dim=1)
    total = e.double().sum(dim=-1, keepdim=True)
    pos = torch.arange(vocab, device=z.device)[None, :]
    top_p = info.top_ps[:, None]
    min_p = info.min_ps[:, None]
    keep = pos < info.top_ks.long().clamp(max=vocab)[:, None]
    keep &= ~((top_p < 1) & (excl >= top_p.double() * total))
    keep &= ~((min_p > 0) & (e_sorted < min_p))
    keep[:, 0] = True
    keep = keep.int().cumprod(dim=-1).bool()  # the cut is the first failing position
    keep_ids = torch.zeros_like(keep).scatter(1, order, keep)
    return torch.where(keep_ids, e, torch.zeros_like(e)).double()


def draw(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Step 4: inverse CDF in token-id order with the two-level block sums (u float64 [bs])."""
    bs, vocab = w.shape
    pad = (-vocab) % SAMPLE_BLOCK
    wp = F.pad(w, (0, pad))
    nb = wp.shape[1] // SAMPLE_BLOCK
    blocks = wp.view(bs, nb, SAMPLE_BLOCK)
    local = blocks.cumsum(dim=-1)
    lanes = blocks.view(bs, nb, SAMPLE_BLOCK // 8, 8).cumsum(dim=2)[:, :, -1, :]
    l0, l1, l2, l3, l4, l5, l6, l7 = lanes.unbind(dim=-1)
    bsum = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
    bcum = bsum.cumsum(dim=-1)
    target = u * bcum[:, -1]
    b = torch.searchsorted(bcum, target[:, None], right=True)[:, 0]
    past_end = b >= nb
    b = b.clamp(max=nb - 1)
    prev = torch.where(b > 0, bcum.gather(1, (b - 1).clamp(min=0)[:, None])[:, 0], 0.0)
    t2 = target - prev
    loc = local[torch.arange(bs, device=w.device), b]
    j = torch.searchsorted(loc, t2[:, None], right=True)[:, 0].clamp(max=SAMPLE_BLOCK - 1)
    pos = torch.where(past_end, wp.shape[1] - 1, b * SAMPLE_BLOCK + j)
    # A rounding fall-through takes the last positive-weight token at or before pos.
    ids = torch.arange(wp.shape[1], device=w.device).expand(bs, -1)
    last_pos = torch.where(wp > 0, ids, torch.full_like(ids, -1)).cummax(dim=-1).values
    return last_pos.gather(1, pos[:, None])[:, 0]


def sampling_weights(pen: torch.Tensor, info: SamplingBatchInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 3 on penalised logits: (float64 weights [bs, vocab], 0 off the kept tokens; the
    row maxima of z). A row's distribution is its weights over their sum; rows whose max is
    not finite (everything masked) have no distribution (the sampler takes the argmax)."""
    temps = info.temperatures
    z = pen / torch.where(temps > 0, temps, torch.ones_like(temps))[:, None]
    m = z.max(dim=-1).values
    e = torch.exp(z - m[:, None])
    truncated = (info.top_ks < pen.shape[1]) | (info.top_ps < 1) | (info.min_ps > 0)
    if not bool(truncated.any()):
        return e.double(), m
    return torch.where(truncated[:, None], _kept_weights(z, e, info), e.double()), m


def sample_ref(logits: torch.Tensor, info: SamplingBatchInfo) -> SampleOutput:
    """The plain-PyTorch definition of the sampler (see the module docstring)."""
    check_inputs(logits, info)
    pen = penalised_logits(logits, info)
    greedy = pen.argmax(dim=-1)
    if info.is_all_greedy:
        next_ids = greedy
    else:
        temps = info.temperatures
        w, m = sampling_weights(pen, info)
        sampled = draw(w, uniforms(info.seeds, info.steps))
        sampled = torch.where(torch.isfinite(m), sampled, pen.argmax(dim=-1))
        next_ids = torch.where(temps == 0, greedy, sampled)
    out = SampleOutput(next_token_ids=next_ids)
    n = _top_n(info)
    if n >= 0:
        logsm = torch.log_softmax(logits, dim=-1)
        out.logprobs = logsm.gather(1, next_ids[:, None])[:, 0]
        top_ids = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :n]
        out.top_logprobs_ids = top_ids
        out.top_logprobs_vals = logsm.gather(1, top_ids)
    return out


def sample_native(logits: torch.Tensor, info: SamplingBatchInfo) -> SampleOutput:
    on_host = logits.device.type == "cpu"  # device logits: Sampler.forward checked info
    # The check reads the (few) temperatures as Python floats: cheaper than two tensor ops.
    if on_host and info.is_all_greedy and any(t != 0 for t in info.temperatures.tolist()):
        raise ValueError("is_all_greedy is set but some temperatures are not 0")
    plain_greedy = info.is_all_greedy and _top_n(info) < 0 and info.logit_bias is None
    if logits.is_cuda and plain_greedy and info.output_token_counts is None:
        # No parameter checks on the device: sampling then queues without a host sync.
        return SampleOutput(next_token_ids=device_op("greedy_sample", logits)(logits))
    res = device_op("sample", logits)(
        logits,
        info.temperatures,
        info.top_ps,
        info.top_ks,
        info.min_ps,
        info.seeds,
        info.steps,
        info.frequency_penalties,
        info.presence_penalties,
        info.repetition_penalties,
        info.output_token_counts,
        info.logit_bias,
        _top_n(info),
        token_bitmask=info.token_bitmask,
    )
    out = SampleOutput(next_token_ids=res[0])
    if len(res) == 4:
        out.logprobs, out.top_logprobs_vals, out.top_logprobs_ids = res[1], res[2], res[3]
    return out


class Sampler:
    """forward(logits [bs, vocab] float32, info) -> SampleOutput; see the module docstring.

    Device logits (--device cuda) are sampled on their device: `info` is checked on the host,
    then moved next to them; the output stays on the device (see device.HostCopy).
    """

    def forward(self, logits: torch.Tensor, info: SamplingBatchInfo) -> SampleOutput:
        if logits.device.type != "cpu":
            from radixserve.device import info_to_device

            check_inputs(logits, info)
            info = info_to_device(info, logits.device)
        if use_native():
            return sample_native(logits, info)
        return sample_ref(logits, info)

    __call__ = forward
