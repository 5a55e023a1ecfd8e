"""How many n-gram drafts a request sends to a verify step: as many as pay for their rows.

A verify step of 1 + k rows costs about 1 + ROW_COST * k decode steps (the quantized
projections and the LM head compute every row; benchmarks/results/speculative_ngram.md). With
a per-draft acceptance rate a, the step yields 1 + a + ... + a^k tokens on average (drafts are
accepted in order until the first rejection), so k drafts pay when that sum exceeds the step's
cost. The rate is each request's own, one per length of the n-gram match behind the drafts
(match_class): a decayed count of draft trials, from its verify steps
(drafts accepted, plus the rejected one) and, while it does not draft, from shadow trials: the
proposal it would have sent is compared with the tokens plain decoding then produced. A greedy
request accepts a draft exactly when it equals the token plain decoding produces, and a sampled
one accepts it with probability p(draft), the probability plain sampling draws it, so both kinds
of trial measure the same rate. Copying spans start drafting within a step or two; free text
stops it, and a request then runs plain decode steps.

The policy only chooses how many drafts to verify: outputs stay plain greedy decoding's token
for token, and sampled outputs keep plain sampling's distribution, whatever it chooses.
"""

from __future__ import annotations

from collections.abc import Sequence

# A verify step of 1 + k rows costs about 1 + ROW_COST * k one-row decode steps (default
# model, Q4_1, AVX2, one thread; bench_ngram.py prints the step costs it measured by row count).
ROW_COST = 0.5
# Each new trial count weighs 1; older ones fade by DECAY per verify or shadow check.
DECAY = 0.75
# Before any trial: a rate of PRIOR_RATE worth PRIOR_TRIALS trials (one draft pays above 0.5).
PRIOR_RATE = 0.6
PRIOR_TRIALS = 2.0
LONG_MATCH = 3  # n-gram matches of this many tokens or more share one rate (match_class)


def matched_prefix(draft: Sequence[int], produced: Sequence[int]) -> tuple[int, int]:
    """(accepted, tried) of `draft` against the tokens produced after it was proposed: drafts
    count as accepted up to the first mismatch, which counts as tried too."""
    accepted = 0
    for d, t in zip(draft, produced, strict=False):
        if d != t:
            return accepted, accepted + 1
        accepted += 1
    return accepted, accepted


def best_draft_len(rate: float, max_draft: int, row_cost: float = ROW_COST) -> int:
    """The k in [0, max_draft] with the most expected tokens per decode step's cost:
    (1 + rate + ... + rate^k) / (1 + row_cost * k); 0 (a plain decode step) unless a draft
    pays."""
    best_k, best = 0, 1.0
    expected, term = 1.0, 1.0
    for k in range(1, max_draft + 1):
        term *= rate
        expected += term
        value = expected / (1.0 + row_cost * k)
        if value > best:
            best_k, best = k, value
    return best_k


def match_class(match_len: int) -> int:
    """Rates are kept apart by the length of the n-gram match behind a draft: 1, 2 and
    LONG_MATCH or more tokens (classes 0, 1, 2). A long match is a copied passage and its
    drafts are mostly right; a one-token match is often a common word seen before and its
    drafts mostly wrong (first-draft acceptance 23%, 48%, 88-93% on bench_ngram.py's prompts),
    so one request can draft while it copies and not while it writes its own words."""
    return min(max(match_len, 1), LONG_MATCH) - 1


class AcceptanceEstimate:
    """One request's per-draft acceptance rate per match class, and the proposal it did not
    send (shadow) or sent (its class, for the verify step's record)."""

    __slots__ = ("hits", "trials", "cls", "shadow", "shadow_at")

    def __init__(self) -> None:
        self.hits = [PRIOR_RATE * PRIOR_TRIALS] * LONG_MATCH
        self.trials = [PRIOR_TRIALS] * LONG_MATCH
        self.cls = 0  # the class of the last proposal
        self.shadow: list[int] = []  # the last proposal not verified
        self.shadow_at = 0  # the request's output length when it was proposed

    def rate(self, cls: int) -> float:
        return self.hits[cls] / self.trials[cls]

    def record(self, cls: int, accepted: int, tried: int) -> None:
        self.hits[cls] = DECAY * self.hits[cls] + accepted
        self.trials[cls] = DECAY * self.trials[cls] + tried

    def check_shadow(self, output_ids: Sequence[int]) -> None:
        """Scores the unsent proposal against the tokens decoded since (once, when any)."""
        if self.shadow and len(output_ids) > self.shadow_at:
            produced = output_ids[self.shadow_at : self.shadow_at + len(self.shadow)]
            self.record(self.cls, *matched_prefix(self.shadow, produced))
            self.shadow = []

    def choose(self, match_len: int, proposal: list[int], output_len: int) -> list[int]:
        """The drafts to send of `proposal` (from a match of `match_len` tokens); an unsent
        proposal becomes the shadow, scored once the next token is decoded."""
        self.cls = match_class(match_len)
        n = best_draft_len(self.rate(self.cls), len(proposal))
        if n == 0:
            self.shadow, self.shadow_at = proposal, output_len
        return proposal[:n]
