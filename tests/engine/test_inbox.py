"""The scheduler's Inbox: a message of several parts (the n copies of one request) is read
whole, so the event loop's drain admits every copy in the same step."""

from __future__ import annotations

import time
from typing import Any

import zmq

from radixserve.engine import ipc
from radixserve.engine.pausing import Inbox
from radixserve.engine.sampling_params import SamplingParams


def _req(rid: str, background: bool = False) -> ipc.TokenizedGenerateReq:
    return ipc.TokenizedGenerateReq(
        rid=rid, input_ids=[1, 2, 3], sampling_params=SamplingParams(), max_new_tokens=4,
        seed=0, background=background,
    )  # fmt: skip


def _pair(tmp_addr: str) -> tuple[zmq.Context[Any], zmq.Socket[Any], Inbox]:
    ctx: zmq.Context[Any] = zmq.Context()
    push = ipc.make_socket(ctx, zmq.PUSH, tmp_addr, bind=True)
    pull = ipc.make_socket(ctx, zmq.PULL, tmp_addr, bind=False)
    return ctx, push, Inbox(pull)


def _read_ahead(inbox: Inbox, n: int) -> None:
    """online_arrived until n messages are read ahead (inproc delivery is asynchronous)."""
    for _ in range(1000):
        inbox.online_arrived()
        if len(inbox.read_ahead) >= n:
            return
        time.sleep(0.001)
    raise AssertionError(f"{len(inbox.read_ahead)} of {n} messages arrived")


def test_parts_of_one_message_arrive_together() -> None:
    ctx, push, inbox = _pair("inproc://inbox-copies")
    try:
        push.send_multipart([ipc.encode(_req(f"r-{i}")) for i in range(3)])
        push.send(ipc.encode(ipc.AbortReq("r-1")))
        assert inbox.poll(1000)
        first = inbox.recv()
        # The rest of the first message is read already: a drain with timeout 0 gets it.
        assert inbox.read_ahead and inbox.poll(0)
        got = [first] + [inbox.recv() for _ in range(3)]
        assert [type(m).__name__ for m in got] == ["TokenizedGenerateReq"] * 3 + ["AbortReq"]
        assert [m.rid for m in got] == ["r-0", "r-1", "r-2", "r-1"]
        assert not inbox.poll(0)
    finally:
        ctx.destroy(linger=0)


def test_online_arrived_reads_ahead_in_order() -> None:
    ctx, push, inbox = _pair("inproc://inbox-online")
    try:
        push.send_multipart([ipc.encode(_req("batch-0", background=True))])
        push.send(ipc.encode(ipc.GetLoadReq(7)))
        _read_ahead(inbox, 2)
        assert not inbox.online_arrived()  # a batch line and a query are not online work
        push.send_multipart([ipc.encode(_req(f"on-{i}")) for i in range(2)])
        _read_ahead(inbox, 4)
        assert inbox.online_arrived()
        rids = [getattr(inbox.recv(), "rid", "query") for _ in range(4)]
        assert rids == ["batch-0", "query", "on-0", "on-1"]
    finally:
        ctx.destroy(linger=0)
