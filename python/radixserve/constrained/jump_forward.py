"""Jump-forward: where the grammar allows exactly one continuation text (a JSON key with its
quotes and colon, the punctuation between fields), its tokens are appended at once and fed to
the model in the next step's extend, instead of costing one decode step each.

Tokenization at the boundaries (as SGLang's jump-forward re-tokenizes): the forced text is
tokenized together with the token sampled last, which is not yet fed to the model (its KV is
computed in the next step, and it has not been streamed yet), so the two may merge into the
tokens the tokenizer would produce for the joined text (`{` + `"name":"` -> `{"`, `name`, ...).
The last of those tokens is left to the model: it may merge with the free text after the
forced part (`":"` + `Alice` -> `":"Alice`). A jump therefore saves (tokens - 1) decode steps.
It is skipped when that is under MIN_GAIN: a jump turns the whole batch's step into an extend
(slower kernels than a pure decode), which a single saved step does not pay back (the
content-heavy `record` schema ran slower with one-token jumps: benchmarks/results/structured.md).
"""

from __future__ import annotations

from typing import Any

from radixserve.constrained.base import GrammarMatcher
from radixserve.models.tokenizer import encode_text

MIN_GAIN = 2  # decode steps a jump must save


def plan_jump(matcher: GrammarMatcher, last_token: int, tokenizer: Any) -> list[int]:
    """The tokens that replace `last_token` (the last sampled one, already accepted by the
    matcher): they spell its text plus a prefix of the forced text. [] when no jump applies."""
    forced = matcher.jump_forward_string()
    if not forced:
        return []
    head = tokenizer.decode([last_token])
    if not head or "\ufffd" in head:  # a partial UTF-8 sequence: no text to join with
        return []
    tokens = encode_text(tokenizer, head + forced, add_special_tokens=False)[:-1]
    if len(tokens) - 1 < MIN_GAIN:
        return []  # too little beyond (a re-spelling of) the last token
    return tokens


def jump_forward(req: Any, tokenizer: Any) -> int:
    """Replace req's last sampled token by plan_jump's tokens, advancing its matcher and
    checking stop conditions after each token as a decode would. Returns the number of output
    tokens gained."""
    m: GrammarMatcher = req.grammar
    last = req.output_ids[-1]
    tokens = plan_jump(m, last, tokenizer)
    if not tokens:
        return 0
    before = len(req.output_ids)
    m.rollback(1)
    req.output_ids.pop()
    for i, tok in enumerate(tokens):
        if not m.accept_token(tok):  # cannot happen for a forced text; undo rather than abort
            if i:
                m.rollback(i)
                del req.output_ids[-i:]
            m.accept_token(last)
            req.output_ids.append(last)
            return 0
        req.output_ids.append(tok)
        req.check_finished(tokenizer)
        if req.finished:  # a stop string or the length limit inside the forced text
            break
    return len(req.output_ids) - before
