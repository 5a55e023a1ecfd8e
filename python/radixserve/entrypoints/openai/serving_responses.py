"""POST /v1/responses and friends over the chat serving code, stored in the durable store.

A response becomes a chat request (instructions as the system message, the conversation of
previous_response_id, then this input) built by ServingChat.build, so validation and
sampling defaults are the online ones. Stored responses (store=true, the default) live in the
store with their conversation, so previous_response_id works across restarts. A background
response is a task of this process: if the process dies the work is gone, and on the next
start mark_interrupted() turns every queued/in_progress one into `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Optional

from radixserve.engine.io_struct import EngineError, GenerateOutput
from radixserve.entrypoints.openai.protocol import ChatCompletionRequest, ChatMessage
from radixserve.entrypoints.openai.responses_objects import (
    CreateResponseRequest,
    finish,
    input_items,
    item_messages,
    output_message,
    public,
    response_format,
    response_object,
    text_format,
)
from radixserve.entrypoints.openai.serving_chat import ServingChat
from radixserve.entrypoints.openai.store_services import not_found
from radixserve.entrypoints.serving_common import encode, new_id
from radixserve.store import Store, StoreFullError

logger = logging.getLogger("radixserve.responses")
INTERRUPTED = ("The server stopped while this background response was running; background "
               "responses are not resumed after a restart.")  # fmt: skip


class ServingResponses:
    def __init__(self, chat: ServingChat, store: Store) -> None:
        self.chat, self.store = chat, store
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def mark_interrupted(self) -> None:
        for record in self.store.with_status("response", ("queued", "in_progress")):
            error = {"code": "server_error", "message": INTERRUPTED}
            self.store.put("response", {**record, "status": "failed", "error": error})

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def get(self, resp_id: str) -> dict[str, Any]:
        record = self.store.get("response", resp_id)
        if record is None:
            raise not_found("response", resp_id, "response_id")
        return record

    def _save(self, record: dict[str, Any]) -> None:
        if record.get("store"):
            try:
                self.store.put("response", record)
            except StoreFullError as e:
                raise EngineError(str(e), 507) from None

    # -- create -------------------------------------------------------------------------------

    async def _prepare(self, req: CreateResponseRequest) -> tuple[list[Any], dict[str, Any]]:
        if req.tools:
            raise EngineError("tools are not supported by /v1/responses yet.", 400, "tools")
        if req.background and not req.store:
            raise EngineError("background responses need store=true.", 400, "background")
        if req.background and req.stream:
            raise EngineError("stream together with background is not supported yet.", 400,
                              "stream")  # fmt: skip
        if req.max_output_tokens is not None and req.max_output_tokens < 1:
            raise EngineError("max_output_tokens must be at least 1.", 400, "max_output_tokens")
        history: list[dict[str, str]] = []
        if req.previous_response_id is not None:
            prev = self.store.get("response", req.previous_response_id)
            if prev is None:
                raise not_found("response", req.previous_response_id, "previous_response_id")
            history = prev["_conversation"] + item_messages(prev["output"])
        items = input_items(req.input)
        conversation = history + item_messages(items)
        system = [{"role": "system", "content": req.instructions}] if req.instructions else []
        chat_req = ChatCompletionRequest(
            messages=[ChatMessage(role=m["role"], content=m["content"])
                      for m in system + conversation],
            max_completion_tokens=req.max_output_tokens, temperature=req.temperature,
            top_p=req.top_p, stream=req.stream, response_format=response_format(text_format(req)),
        )  # fmt: skip
        await self.chat.grammar_ready(chat_req)
        reqs = self.chat.build(chat_req)
        status = "queued" if req.background else "in_progress"
        record = response_object(new_id("resp_"), req, self.chat.model_name, status)
        record["_conversation"] = conversation
        record["_input_items"] = items
        return reqs, record

    async def create(self, req: CreateResponseRequest) -> bytes | AsyncIterator[bytes]:
        reqs, record = await self._prepare(req)
        if req.stream:
            updates = await self.chat.primed(self.chat.stream_all(reqs))
            return self._stream(record, updates)
        if req.background:
            self._save(record)
            task = asyncio.create_task(self._background(record, reqs))
            self.tasks[record["id"]] = task
            task.add_done_callback(lambda _: self.tasks.pop(record["id"], None))
            return encode(public(record))
        final = (await self.chat.collect(reqs))[0]
        record = finish(record, final)
        self._save(record)
        return encode(public(record))

    async def _background(self, record: dict[str, Any], reqs: list[Any]) -> None:
        self._save({**record, "status": "in_progress"})
        try:
            final = (await self.chat.collect(reqs))[0]
            self._save(finish(record, final))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the work failed: say so in the stored response
            logger.exception("background response %s failed", record["id"])
            message = e.message if isinstance(e, EngineError) else f"{type(e).__name__}: {e}"
            self._save({**record, "status": "failed",
                        "error": {"code": "server_error", "message": message}})  # fmt: skip

    async def _stream(self, record: dict[str, Any], updates: AsyncIterator[tuple[int, Any]]
                      ) -> AsyncIterator[bytes]:  # fmt: skip
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            seq += 1
            body = encode({"type": kind, "sequence_number": seq - 1, **fields})
            return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"

        item_id = new_id("msg_")
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        yield event("response.created", response=public(record))
        yield event("response.in_progress", response=public(record))
        yield event("response.output_item.added", output_index=0,
                    item={**output_message("", "in_progress", item_id), "content": []})
        yield event("response.content_part.added", item_id=item_id, output_index=0,
                    content_index=0, part={"type": "output_text", "text": "", "annotations": []})
        final: Optional[GenerateOutput] = None
        try:
            async for _, out in updates:
                final = out
                if out.delta_text:
                    yield event("response.output_text.delta", **where, delta=out.delta_text,
                                logprobs=[])  # fmt: skip
        except EngineError as e:
            failed = {**record, "status": "failed",
                      "error": {"code": "server_error", "message": e.message}}  # fmt: skip
            yield event("response.failed", response=public(failed))
            return
        assert final is not None
        done = finish(record, final, item_id)
        text = final.text
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", item_id=item_id, output_index=0,
                    content_index=0, part=done["output"][0]["content"][0])  # fmt: skip
        yield event("response.output_item.done", output_index=0, item=done["output"][0])
        self._save(done)
        kind = "response.completed" if done["status"] == "completed" else "response.incomplete"
        yield event(kind, response=public(done))

    # -- the other routes ---------------------------------------------------------------------

    async def cancel(self, resp_id: str) -> dict[str, Any]:
        record = self.get(resp_id)
        if not record.get("background"):
            raise EngineError("Only background responses can be cancelled.", 400, "response_id")
        if record["status"] not in ("queued", "in_progress"):
            raise EngineError(f"Response {resp_id} is already {record['status']} and cannot be "
                              "cancelled.", 400, "response_id")  # fmt: skip
        task = self.tasks.pop(resp_id, None)
        if task is not None:
            task.cancel()  # aborts its engine request
            await asyncio.gather(task, return_exceptions=True)
        record = {**self.get(resp_id), "status": "cancelled"}
        self._save(record)
        return public(record)

    async def delete(self, resp_id: str) -> dict[str, Any]:
        self.get(resp_id)
        task = self.tasks.pop(resp_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.store.delete("response", resp_id)
        return {"id": resp_id, "object": "response", "deleted": True}
