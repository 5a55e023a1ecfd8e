"""Messages between the TokenizerManager and the scheduler process (msgspec msgpack over ZMQ).

Two PUSH/PULL ipc sockets in a private temp dir: requests flow in, batched outputs flow out.
Every message is a tagged msgspec Struct, so one decoder reads the whole union.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Optional, Union

import msgspec
import zmq

from radixserve.engine.finish_reason import FinishReason
from radixserve.engine.io_struct import EngineError
from radixserve.engine.sampling_params import SamplingParams
from radixserve.engine.session_protocol import SessionCtlReq as SessionCtlReq
from radixserve.engine.session_protocol import SessionParams


class TokenizedGenerateReq(msgspec.Struct, tag=True, kw_only=True):
    rid: str
    input_ids: list[int]
    sampling_params: SamplingParams
    max_new_tokens: int  # resolved against the context length by the TokenizerManager
    seed: int
    stream: bool = False
    stream_interval: int = 1
    return_logprob: bool = False
    top_logprobs_num: int = 0
    logprob_start_len: int = -1
    background: bool = False  # batch work: admitted after every waiting online request
    session_params: Optional[SessionParams] = None  # the prompt continues earlier tokens
    grammar_after: Optional[str] = None  # issue #10: constrain only after this text (</think>)
    # Pooling (#8): run the prompt only and send back the model's output (embedding or
    # classifier logits); label_token_ids: send the next-token logprobs of these ids (/v1/score).
    pooling: bool = False
    label_token_ids: Optional[list[int]] = None
    token_type_ids: Optional[list[int]] = None  # BERT segment ids (cross-encoder pairs)


class AbortReq(msgspec.Struct, tag=True):
    rid: str


class FlushCacheReq(msgspec.Struct, tag=True):
    query_id: int


class GetLoadReq(msgspec.Struct, tag=True):
    query_id: int


class UpdateWeightsReq(msgspec.Struct, tag=True):
    query_id: int
    model_path: str


class PauseGenerationReq(msgspec.Struct, tag=True):
    """/pause_generation (paused true) and /continue_generation (false): while paused the
    scheduler runs no step; requests keep their KV, and new ones wait in the queue."""

    query_id: int
    paused: bool


class ProfileReq(msgspec.Struct, tag=True, kw_only=True):
    """/start_profile (start true) and /stop_profile (engine/profiler.py)."""

    query_id: int
    start: bool
    output_dir: str = ""
    num_steps: Optional[int] = None
    activities: Optional[list[str]] = None  # CPU, GPU; None: CPU, and GPU when CUDA is there
    with_stack: bool = False
    record_shapes: bool = False


class ReqUpdate(msgspec.Struct, array_like=True):
    """What one request added since its last update (token ids, logprobs) and its state."""

    rid: str
    new_ids: list[int]
    finished: bool
    finish_reason: Optional[FinishReason]
    prompt_tokens: int
    cached_tokens: int
    # Per new token: logprob of the chosen token, then (ids, logprobs) of the top alternatives.
    logprobs: Optional[list[float]] = None
    top_ids: Optional[list[list[int]]] = None
    top_logprobs: Optional[list[list[float]]] = None
    # Input logprobs, sent once (with the first update after the prompt is done): the logprob
    # of each prompt token from position max(logprob_start_len, 1) on, then top alternatives.
    input_logprobs: Optional[list[float]] = None
    input_top_ids: Optional[list[list[int]]] = None
    input_top_logprobs: Optional[list[list[float]]] = None
    # Pooling (#8): the embedding / classifier logits, or the label logprobs of a score request.
    pooled: Optional[list[float]] = None
    # Non-zero: the request failed inside the engine (finish_reason holds the message); the
    # caller gets an error with this HTTP status instead of a normal final output.
    error_status: int = 0
    # Speculative decoding totals so far: verify steps, draft tokens proposed and accepted.
    spec_verify_ct: int = 0
    spec_draft_tokens: int = 0
    spec_accepted_tokens: int = 0


class BatchOut(msgspec.Struct, tag=True):
    updates: list[ReqUpdate]


class QueryResult(msgspec.Struct, tag=True):
    query_id: int
    result: Any


class Ready(msgspec.Struct, tag=True):
    info: dict[str, Any]


class SchedulerFailed(msgspec.Struct, tag=True):
    message: str


ToScheduler = Union[
    TokenizedGenerateReq, AbortReq, FlushCacheReq, GetLoadReq, UpdateWeightsReq, SessionCtlReq,
    PauseGenerationReq, ProfileReq,
]
FromScheduler = Union[BatchOut, QueryResult, Ready, SchedulerFailed]

_encoder = msgspec.msgpack.Encoder()
to_scheduler_decoder = msgspec.msgpack.Decoder(ToScheduler)
from_scheduler_decoder = msgspec.msgpack.Decoder(FromScheduler)


def encode(msg: msgspec.Struct) -> bytes:
    """msgpack carries 64-bit integers: a larger one in a request (a seed, a top_k, a session
    capacity that JSON decoding accepted as a Python int) is the client's error, a 400."""
    try:
        return _encoder.encode(msg)
    except OverflowError:
        raise EngineError("A number in the request is out of range: integers must fit in 64 "
                          "bits.", 400) from None


def new_ipc_addresses() -> tuple[str, str, str]:
    """(temp dir, address of the request socket, address of the output socket)."""
    path = tempfile.mkdtemp(prefix="radixserve-")
    return path, f"ipc://{os.path.join(path, 'in')}", f"ipc://{os.path.join(path, 'out')}"


def make_socket(ctx: zmq.Context[Any], kind: int, addr: str, bind: bool) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    # Unbounded queues: the scheduler must never block on a slow reader.
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    if bind:
        sock.bind(addr)
    else:
        sock.connect(addr)
    return sock
