"""Pausable background steps: a batch-only forward gives way to online work between layers.

A step with only batch (background) requests asks the scheduler's `Inbox` whether an online
request has arrived when its set-up is done (before its first layer), then after each decoder
layer (it runs them one at a time) and after each of its LM head's vocabulary slices
(layers/logits.py; after the last one too, before the sampling and the step's output). If one
has, the forward stops there and the step is PAUSED (`PausedStep`): its requests leave
`running` / `chunked` for a while, keeping the KV slots allocated for this step (those the
finished layers wrote stay valid; the others are written when it resumes). The scheduler
then runs the online requests' steps as usual (the paused requests take no part: they are in
none of its queues), and resumes the paused step from where it stopped as soon as no online
work is left. It then produces exactly the tokens it would have produced unpaused: same
batch, same values.

Without this, an online request arriving during a batch-only step waits for the whole step
(the native DecoderStack runs all layers in one call; tens of ms idle, ~1 s on a loaded host).

Rules that keep it simple: one step at most is paused; an abort of one of its requests first
finishes the step (not pausable), then aborts as usual; online steps see the paused requests
only through what they hold (KV slots and headroom, req_to_token rows), not as request slots:
online requests that would have preempted paused lines run beside them instead, up to the
spare rows, so --max-running-requests can be exceeded by that many while a step is paused
(when it resumes with online requests still running, the newest lines are retracted back to
the limit). When the online work cannot be admitted the paused step resumes (afterwards the
usual preemption applies to all). If an online prompt took the chunked-prefill
place meanwhile, a paused unfinished prompt goes back to the queue when its step is done (its
computed prefix stays cached). Only the CPU model runner pauses (ModelRunner.can_pause); with
overlap scheduling (the GPU) steps are never paused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

import torch
import zmq

from radixserve.engine import ipc
from radixserve.engine.input_logprobs import Span
from radixserve.engine.request import Req
from radixserve.engine.step_guard import InflightStep
from radixserve.forward_batch import ForwardBatch, PausedForward
from radixserve.layers.sampling_info import SamplingBatchInfo


@dataclass
class PausedStep:
    """A launched batch-only step stopped between layers, with what finishing it needs."""

    batch: list[Req]  # batch order
    decodes: list[Req]  # its rows from `running` (out of it while paused)
    chunked: Optional[Req]  # its unfinished prompt, `Scheduler.chunked` when it paused
    inflight: InflightStep
    fb: ForwardBatch
    info: SamplingBatchInfo
    extra: Optional[tuple[torch.Tensor, list[Span]]]  # input_logits_rows(batch, fb)
    forward: Optional[PausedForward] = None  # where its forward stopped; None: not begun

    def holds(self, rid: str) -> bool:
        return any(r.rid == rid for r in self.batch)


def is_online_request(msg: Any) -> bool:
    return isinstance(msg, ipc.TokenizedGenerateReq) and not msg.background


class Inbox:
    """The scheduler's input socket. `online_arrived` (asked between the layers of a background
    step) reads what has arrived without blocking and keeps it, in order, for the event loop: a
    step pauses for an online request, not for batch lines or queries."""

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self.sock = sock
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.read_ahead: deque[Any] = deque()

    def poll(self, timeout_ms: int) -> bool:
        return bool(self.read_ahead) or bool(self.poller.poll(timeout_ms))

    def recv(self) -> Any:
        if not self.read_ahead:
            self._read_one()
        return self.read_ahead.popleft()

    def online_arrived(self) -> bool:
        while self.poller.poll(0):
            self._read_one()
        return any(is_online_request(m) for m in self.read_ahead)

    def _read_one(self) -> None:
        # One ZMQ message may hold several requests in its parts (the n copies of one request):
        # they arrive together, so the loop's drain admits them in the same step.
        parts = self.sock.recv_multipart()
        self.read_ahead.extend(ipc.to_scheduler_decoder.decode(p) for p in parts)
