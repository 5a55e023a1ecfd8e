"""Which waiting requests run next: ordering (lpm / fcfs) and admission within budgets.

lpm orders the queue by the longest prefix cached in the radix tree, so requests sharing a
prefix run while it is cached; with a long queue (> LPM_QUEUE_LIMIT) matching every request
costs more than it saves and the order falls back to FCFS. Admission keeps KV accounting:
a request is admitted only if the pool (free + evictable slots) holds its uncached prompt
plus decode headroom for it and for everything already running. Retraction is the safety net
when that estimate is too optimistic.

Background (batch API) requests yield to online ones. They wait behind every online request;
a step that has online work (an online prefill or decode) runs only online requests, so the
background decodes sit that step out, keeping their KV; and an online request that does not
fit (request slots, req_to_token rows, KV) preempts background work, newest first: it is
retracted, i.e. its KV goes back to the radix tree and it is recomputed later from prompt +
output so far (nothing generated is lost or sent twice). With no online work, background
requests get the whole engine, except that such a step prefills at most
--background-prefill-size tokens: one step prefilling a whole wave of new lines (512 tokens
next to the decodes) costs as much as several decode steps, and where a batch-only step cannot
pause between layers (engine/pausing.py), an online request arriving meanwhile waits for it. And for --online-recent-window
seconds after a step with online work, a batch-only step carries at most
--background-tokens-after-online tokens (decode rows taken in turn, then prefill): online
clients usually send their next request right after a reply, and without this the scheduler
starts a full batch step in that gap, which the new request then waits for. The batch keeps
moving meanwhile (a pause there once hung a batch test).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from radixserve.engine.kv_manager import KVManager
from radixserve.engine.request import Req

LPM_QUEUE_LIMIT = 128
HEADROOM_CLIP = 256  # decode tokens reserved per request at most
INIT_NEW_TOKEN_RATIO = 0.5  # share of the remaining decode tokens reserved
MIN_NEW_TOKEN_RATIO = 0.1
NEW_TOKEN_RATIO_DECAY = 0.002  # per step, back towards the minimum after a retraction


def _sort(waiting: deque[Req], key: Callable[[Req], int]) -> None:
    ordered = sorted(waiting, key=key)
    waiting.clear()
    waiting.extend(ordered)


def order_waiting(waiting: deque[Req], policy: str, kv: KVManager) -> None:
    """Sort `waiting` in place by policy (stable, so ties keep arrival order); background
    (batch) requests go after all online ones whatever the policy."""
    if policy != "fcfs" and kv.tree is not None and len(waiting) <= LPM_QUEUE_LIMIT:
        prefix = {id(r): kv.match(r.fill_ids[:-1])[0] for r in waiting}
        _sort(waiting, key=lambda r: -prefix[id(r)])
    if any(r.background for r in waiting):
        _sort(waiting, key=lambda r: r.background)


def headroom(req: Req, ratio: float) -> int:
    return int(min(req.remaining_new_tokens(), HEADROOM_CLIP) * ratio)


def background_prefill_budget(budget: int, background_size: int) -> int:
    """Prefill tokens of a step with only background work. Spreading a wave of new lines
    over more steps costs little throughput: every step still carries all running decodes,
    and on the CPU a forward's cost grows with its tokens, not its count."""
    return max(1, min(budget, background_size))


def background_step_cap(now: float, last_online: float, window: float, cap: int) -> int | None:
    """Most tokens a batch-only step may carry at `now`: `cap` within `window` seconds of the
    last online step (`last_online`), else None (no cap beyond the prefill budget)."""
    return cap if now - last_online < window else None


def take_background_rows(running: list[Req], cap: int) -> tuple[list[Req], list[Req]]:
    """(rows decoded this step, running in its next order): the first `cap` rows, moved to
    the back so the next capped step takes the others (every line keeps moving)."""
    chosen = running[:cap]
    return chosen, running[cap:] + chosen


def has_online_work(waiting: deque[Req], running: list[Req], chunked: Req | None) -> bool:
    return any(not r.background for r in (*waiting, *running, *([chunked] if chunked else [])))


def preempt_for_online(
    waiting: deque[Req],
    running: list[Req],
    chunked: Req | None,
    kv: KVManager,
    max_running: int,
    budget: int,
    ratio: float,
    retract: Callable[[Req], None],
) -> int:
    """Retract background requests, newest first, until the online work of the next step fits.

    That work is the online chunk being prefilled, then the waiting online requests in queue
    order up to the prefill token budget; it fits when there are request slots and rows for it
    and the KV pool holds its uncached tokens plus decode headroom for everything running.
    A background chunk in progress is retracted whenever there is online work, as it would
    otherwise run in that step (and take its prefill budget first). `retract` takes a request
    out of `running` (or out of the chunk), frees its KV and queues it again. Returns how many
    were retracted.
    """
    online = [r for r in waiting if not r.background]
    chunk_online = chunked is not None and not chunked.background
    retracted = 0
    if chunked is not None and chunked.background and has_online_work(waiting, running, None):
        retract(chunked)
        chunked = None
        retracted += 1
    if not online and not chunk_online:
        return retracted
    tokens = reserve = n_new = 0  # prefill tokens, their decode headroom, new requests
    if chunk_online:
        assert chunked is not None
        tokens = min(chunked.seq_len - chunked.kv_len, budget)
    for req in online:
        if tokens >= budget:
            break
        fill = req.fill_ids
        tokens += min(len(fill) - kv.match(fill[:-1])[0], budget - tokens)
        reserve += headroom(req, ratio)
        n_new += 1
    while True:
        background = [r for r in running if r.background]
        in_use = len(running) + (1 if chunked is not None else 0)
        reserved = len(running) + sum(headroom(r, ratio) for r in running)
        fits = (
            max_running - in_use >= n_new
            and kv.free_rows() >= n_new
            and reserved + tokens + reserve <= kv.available() + kv.evictable()
        )
        if fits or not background:
            return retracted
        retract(max(background, key=lambda r: r.arrival))
        retracted += 1


@dataclass
class PrefillPlan:
    """The prefill part of one step: (request, tokens fed) pairs and what is left over."""

    reqs: list[Req] = field(default_factory=list)
    budget: int = 0  # prefill tokens still allowed in this step
    reserved: int = 0  # KV slots promised to this step and decode headroom
    chunked: Req | None = None  # a request whose prompt is not finished after this step
    stalled: Req | None = None  # the unfinished chunk, when its next piece does not fit yet

    def add(self, req: Req, take: int) -> None:
        req.extend_len = take
        if not req.admitted_once:
            req.cached_tokens = req.kv_len  # the prefix-cache hit reported to the user
            req.admitted_once = True
        self.reqs.append(req)
        self.budget -= take
        self.reserved += take
        if req.kv_len + take < req.seq_len:
            self.chunked = req


def plan_prefill(
    waiting: deque[Req],
    chunked: Req | None,
    kv: KVManager,
    budget: int,
    reserved: int,
    free_req_slots: int,
    ratio: float,
    fair: bool = False,
    online_only: bool = False,
) -> PrefillPlan:
    """Continue the chunked request, then admit waiting requests in order while they fit.

    `reserved` is what the running decodes need (this step's tokens plus their headroom);
    `free_req_slots` is how many more requests may run; `online_only` admits no background
    request (online work exists, so it would sit the step out anyway). Admitted requests
    leave `waiting`. One prompt at a time is unfinished (chunked); prompts admitted next to it
    go in whole.

    fcfs: the chunk takes what it wants of the budget first, so a long prompt holds every
    step's whole budget until it is in, and the queue behind it waits (head-of-line blocking).
    fair: while other prompts wait, a chunk (continued or new) is given half the budget; the
    rest admits waiting prompts in order, and what they leave goes back to the chunk. A step
    never prefills more than the budget either way, and the decodes always run with it.
    """
    plan = PrefillPlan(budget=budget, reserved=reserved)
    share = max(budget // 2, 1) if fair else budget  # a chunk's budget while others wait
    if chunked is not None:
        want = chunked.seq_len - chunked.kv_len
        take = min(want, share if waiting else budget)
        if plan.reserved + take > kv.available() + kv.evictable():
            plan.stalled = chunked  # wait for decodes to free memory
            return plan
        plan.add(chunked, take)
        if plan.chunked is not None and not fair:
            return plan  # the whole budget went to the chunk
    admitted = _admit(plan, waiting, kv, free_req_slots, ratio, share, fair, online_only)
    chunk = plan.chunked
    if fair and chunk is not None and plan.budget > 0:
        # The budget the queue did not use goes back to the chunk.
        more = min(chunk.seq_len - chunk.kv_len - chunk.extend_len, plan.budget)
        if plan.reserved + more <= kv.available() + kv.evictable():
            chunk.extend_len += more
            plan.budget -= more
            plan.reserved += more
            if chunk.kv_len + chunk.extend_len >= chunk.seq_len:
                plan.chunked = None
    for _ in admitted:  # the admitted requests are the front of the queue, in order
        waiting.popleft()
    return plan


def _admit(
    plan: PrefillPlan,
    waiting: deque[Req],
    kv: KVManager,
    free_req_slots: int,
    ratio: float,
    share: int,
    fair: bool,
    online_only: bool,
) -> list[Req]:
    """Admit waiting requests in order into the plan's budget; returns the admitted ones."""
    admitted: list[Req] = []
    for pos, req in enumerate(waiting):
        if plan.budget <= 0 or free_req_slots <= 0 or kv.free_rows() == 0:
            break
        if online_only and req.background:
            break  # background requests are queued after every online one
        if not kv.admit(req):
            break
        want = req.seq_len - req.kv_len
        take = min(want, plan.budget)
        if take < want and plan.chunked is not None:
            kv.release(req)
            break
        if take < want and pos + 1 < len(waiting):
            take = min(take, share)  # a new chunk, others behind it: its share
        need = plan.reserved + take + headroom(req, ratio)
        if need > kv.available() + kv.evictable():
            # Does not fit now; keep the order (no overtaking) so large requests cannot starve.
            kv.release(req)
            break
        plan.add(req, take)
        admitted.append(req)
        free_req_slots -= 1
        plan.reserved += headroom(req, ratio)
        if plan.chunked is req and not fair:
            break  # fcfs: the chunk ends the step's admissions
    return admitted
