"""What every route handler needs: the server's objects, request decoding, response helpers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import msgspec
from litestar import Request, Response
from litestar.response import Stream

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.native.generate import ServingGenerate
from radixserve.entrypoints.openai.serving_chat import ServingChat
from radixserve.entrypoints.openai.serving_completions import ServingCompletions
from radixserve.entrypoints.openai.serving_models import ServingModels
from radixserve.entrypoints.serving_tokenize import ServingTokenize
from radixserve.metrics import ServerMetrics

if TYPE_CHECKING:
    from radixserve.args import ServerArgs
    from radixserve.engine.tokenizer_manager import TokenizerManager

T = TypeVar("T")
JSON = "application/json"
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


@dataclass
class ServerState:
    tm: TokenizerManager
    server_args: ServerArgs
    model_name: str
    metrics: Optional[ServerMetrics]
    chat: ServingChat
    completions: ServingCompletions
    generate: ServingGenerate
    models: ServingModels
    tokenize: ServingTokenize


def get_state(request: Request[Any, Any, Any]) -> ServerState:
    return request.app.state.server  # type: ignore[no-any-return]


def _invalid(e: msgspec.ValidationError) -> EngineError:
    message = str(e)
    m = _AT.search(message)
    return EngineError(f"Invalid request: {message}", 400, m.group(1) if m else None)


def decode(body: bytes, kind: type[T]) -> T:
    """JSON body -> Struct; malformed JSON or a wrong type is a 400 naming the field."""
    if not body.strip():
        raise EngineError("The request body is empty; a JSON object is expected.", 400)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        if "got `null`" not in str(e):
            raise _invalid(e) from None
        return convert_request(msgspec.json.decode(body), kind)  # the rare path: see there
    except msgspec.DecodeError as e:
        raise EngineError(f"Invalid JSON body: {e}", 400) from None


def convert_request(raw: Any, kind: type[T]) -> T:
    """Parsed JSON -> Struct. An explicit null for a field that has a default means "not
    given", as the OpenAI spec marks those fields nullable and vLLM and the OpenAI clients of
    other languages send `"n": null`, `"stream": null`; a null for a required field stays a
    400 naming it."""
    if isinstance(raw, dict) and isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        defaulted = {f.encode_name for f in msgspec.structs.fields(kind) if not f.required}
        raw = {k: v for k, v in raw.items() if v is not None or k not in defaulted}
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as e:
        raise _invalid(e) from None


def json_response(body: bytes, status: int = 200) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=JSON)


def sse_response(chunks: AsyncIterator[bytes]) -> Stream:
    return Stream(content=chunks, media_type="text/event-stream",
                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


def respond(result: bytes | AsyncIterator[bytes]) -> Response[Any]:
    return json_response(result) if isinstance(result, bytes) else sse_response(result)


async def unless_disconnected(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """Run `work` (a whole non-stream request, or a stream's wait for its first token) while
    watching the connection: a client that leaves cancels it, which aborts its engine requests
    and frees their KV. Streams watch for themselves once they have started."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise EngineError("The client disconnected.", 499)
    return task.result()
