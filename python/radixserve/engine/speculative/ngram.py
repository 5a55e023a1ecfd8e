"""N-gram (prompt-lookup) draft proposals: continue the sequence the way it went before.

The last n tokens of a request's prompt + output (n from max_ngram down to min_ngram) are
looked up in the earlier tokens; at the most recent earlier occurrence, the tokens that
followed it become the draft. No draft model: useful when outputs copy from the prompt
(code edits, extraction, summaries quoting their source, repetitive text).
"""

from __future__ import annotations

from collections.abc import Sequence


def longest_match(
    tokens: Sequence[int], num_draft: int, max_ngram: int = 4, min_ngram: int = 1
) -> tuple[int, list[int]]:
    """(n, draft): up to `num_draft` tokens that followed the latest earlier match of the
    longest suffix n-gram of `tokens` (n <= max_ngram); (0, []) when nothing matches."""
    total = len(tokens)
    if num_draft <= 0 or total < 2:
        return 0, []
    for n in range(min(max_ngram, total - 1), min_ngram - 1, -1):
        pattern = list(tokens[total - n :])
        first = pattern[0]
        # Most recent start i with tokens[i : i + n] == pattern and i + n < total.
        for i in range(total - n - 1, -1, -1):
            if tokens[i] == first and list(tokens[i : i + n]) == pattern:
                return n, list(tokens[i + n : i + n + num_draft])
    return 0, []


def propose_ngram(
    tokens: Sequence[int], num_draft: int, max_ngram: int = 4, min_ngram: int = 1
) -> list[int]:
    """The draft of longest_match."""
    return longest_match(tokens, num_draft, max_ngram, min_ngram)[1]
