"""Sessions and /extend conversations inside the scheduler, on the KV-reading test model.

The model predicts from the KV it reads back, so a session prompt built wrongly, or a locked
prefix whose slots were reused, changes the output; expected outputs come from the plain
token list.
"""

from __future__ import annotations

from typing import Any, Optional

from radixserve.engine import ipc
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.scheduler import Scheduler
from radixserve.engine.session_protocol import SessionCtlReq, SessionParams

from .test_scheduler_logic import all_free, expected, make, run


def ctl(s: Scheduler, op: str, sid: Optional[str] = None, capacity: int = 0) -> list[Any]:
    return s.sessions.control(SessionCtlReq(query_id=0, op=op, session_id=sid, capacity=capacity))


def send(s: Scheduler, rid: str, ids: list[int], session: SessionParams, max_new: int = 8,
         ) -> list[ipc.ReqUpdate]:  # fmt: skip
    msg = ipc.TokenizedGenerateReq(rid=rid, input_ids=ids, seed=1, max_new_tokens=max_new,
                                   sampling_params=SamplingParams(max_new_tokens=max_new),
                                   session_params=session)  # fmt: skip
    return s.add_request(msg)


def test_session_prompts_locks_and_close() -> None:
    s = make()
    assert ctl(s, "open", "s", 200) == [200, "s"]
    a_in, b_in, c_in = [1, 2, 3, 4, 5], [6, 7], [8, 9, 10]
    send(s, "a", a_in, SessionParams(id="s"))
    a_out = run(s)["a"].new_ids
    assert a_out == expected(a_in, 8)
    locked = s.kv.tree.protected_size()
    assert locked == len(a_in) + len(a_out) - 1  # all but the last token have KV
    # Flood the pool so eviction runs: the session's prefix must survive it.
    for i in range(20):
        send_plain = [40 + i % 10] * 30
        s.add_request(ipc.TokenizedGenerateReq(rid=f"x{i}", input_ids=send_plain, seed=1,
                                               max_new_tokens=4,
                                               sampling_params=SamplingParams()))  # fmt: skip
    run(s)
    send(s, "b", b_in, SessionParams(id="s", rid="a"))
    b = run(s)["b"]
    assert b.new_ids == expected(a_in + a_out + b_in, 8)
    assert b.cached_tokens == len(a_in) + len(a_out) - 1
    send(s, "c", c_in, SessionParams(id="s", rid="a", offset=-2))
    assert run(s)["c"].new_ids == expected((a_in + a_out)[:-2] + c_in, 8)
    assert not s.flush_cache()  # a session is open
    assert ctl(s, "list") == [200, ["s"]]
    assert ctl(s, "close", "s")[0] == 200 and ctl(s, "close", "s")[0] == 404
    assert s.kv.tree.protected_size() == 0
    assert all_free(s)


def test_refusals_answer_at_once() -> None:
    s = make(context=64)
    assert ctl(s, "open", "s", 20)[0] == 200
    assert ctl(s, "open", "s", 20)[0] == 400
    [up] = send(s, "r", [1, 2], SessionParams(id="nope"))
    assert up.finished and up.finish_reason and up.finish_reason.status_code == 404
    [up] = send(s, "r", [1] * 25, SessionParams(id="s"))
    assert up.finish_reason and up.finish_reason.status_code == 400
    assert not send(s, "a", [1, 2, 3], SessionParams(id="s"), max_new=100)
    out = run(s)["a"]
    assert len(out.new_ids) == 20 - 3  # cut at the capacity
    [up] = send(s, "r", [4], SessionParams(id="s", rid="a"))
    assert up.finish_reason and "capacity" in (up.finish_reason.message or "")
    [up] = send(s, "r", [4], SessionParams(rid="unknown-conversation"))
    assert up.finish_reason and up.finish_reason.status_code == 404
    assert s.is_idle()


def test_extend_conversation_and_idle_expiry() -> None:
    s = make(session_idle_timeout=5.0)
    s.add_request(ipc.TokenizedGenerateReq(rid="conv", input_ids=[3, 1, 4], seed=1,
                                           max_new_tokens=4,
                                           sampling_params=SamplingParams()))  # fmt: skip
    history = [3, 1, 4] + run(s)["conv"].new_ids
    for turn in range(3):
        send(s, f"t{turn}", [turn + 5], SessionParams(rid="conv"), max_new=4)
        up = run(s)[f"t{turn}"]
        assert up.new_ids == expected(history + [turn + 5], 4)
        assert up.cached_tokens == len(history) - 1
        history += [turn + 5] + up.new_ids
    assert s.kv.tree.protected_size() == len(history) - 1  # the latest turn stays locked
    assert ctl(s, "open", "idle", 100)[0] == 200
    # Pretend both were last used long ago; the next check closes and forgets them.
    s.sessions.sessions["idle"].last_used -= 10.0
    for entry in s.sessions.conversations.entries.values():
        entry.last_used -= 10.0
    s.sessions._next_expiry = 0.0
    s.sessions.expire()
    assert ctl(s, "list") == [200, []]
    assert s.sessions.conversations.get("conv") is None
    assert s.kv.tree.protected_size() == 0
    assert all_free(s)
