"""The seams between the engine's parts are typed (mypy checks them), never `Any`."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from radixserve.engine.kv_manager import KVManager
from radixserve.engine.scheduler import Scheduler
from radixserve.entrypoints.pooling.runner import run_all
from radixserve.entrypoints.serving_common import ServingEngine
from radixserve.entrypoints.state import ServerState


def annotation(fn: Any, name: str) -> str:
    return str(inspect.signature(fn).parameters[name].annotation)


@pytest.mark.parametrize(
    ("fn", "name", "expected"),
    [
        (Scheduler.__init__, "runner", "ModelRunner"),
        (Scheduler._process_results, "sample", "SampleOutput"),
        (KVManager.__init__, "allocator", "KVAllocator"),
        (KVManager.__init__, "tree", "Optional[RadixCache]"),
        (KVManager.__init__, "req_to_token_pool", "ReqToTokenPool"),
        (ServingEngine.__init__, "tm", "TokenizerManager"),
        (run_all, "tm", "TokenizerManager"),
    ],
)  # fmt: skip
def test_seam_is_typed(fn: Any, name: str, expected: str) -> None:
    assert annotation(fn, name) == expected


def test_server_state_fields_are_typed() -> None:
    hints = ServerState.__annotations__
    assert hints["tm"] == "TokenizerManager" and hints["server_args"] == "ServerArgs"
    assert not [k for k, v in hints.items() if "Any" in str(v)], hints


def test_finish_reason_is_one_struct_across_the_process_boundary() -> None:
    """The scheduler's FinishReason arrives in the caller's process as the same struct."""
    from radixserve.engine import ipc
    from radixserve.engine.finish_reason import FinishReason
    from radixserve.engine.session_protocol import rejected, rejection

    sent = [FinishReason(type="stop", matched="END"), rejection("no such session", 404)]
    for reason in sent:
        up = ipc.ReqUpdate(rid="r", new_ids=[1], finished=True, finish_reason=reason,
                           prompt_tokens=3, cached_tokens=0)  # fmt: skip
        got = ipc.from_scheduler_decoder.decode(ipc.encode(ipc.BatchOut([up])))
        assert isinstance(got, ipc.BatchOut)
        assert got.updates[0].finish_reason == reason
    assert rejected(sent[0]) is None and rejected(sent[1]) == ("no such session", 404)
