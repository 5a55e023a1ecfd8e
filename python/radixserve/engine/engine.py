"""radixserve.Engine: the offline API (SGLang's shape), without an HTTP server.

The TokenizerManager runs on a private event loop in a daemon thread; the blocking methods
submit coroutines to it. Results are SGLang-shaped dicts: {"text", "output_ids", "meta_info"}.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Optional, TypeVar, Union

from radixserve.args import ServerArgs
from radixserve.engine.io_struct import GenerateOutput, GenerateRequest
from radixserve.engine.sampling_params import parse_sampling_params
from radixserve.engine.tokenizer_manager import TokenizerManager

T = TypeVar("T")
Prompt = Union[str, list[str], None]
Params = Union[dict[str, Any], list[dict[str, Any]], None]
_DONE = object()


def _to_dict(out: GenerateOutput, delta: bool = False) -> dict[str, Any]:
    return {
        "text": out.delta_text if delta else out.text,
        "output_ids": list(out.delta_ids if delta else out.output_ids[: out.completion_tokens]),
        "meta_info": out.meta_info(),
    }


class Engine:
    def __init__(self, model_path: Optional[str] = None, **server_args: Any) -> None:
        self.server_args = ServerArgs(model_path=model_path, **server_args)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ids = itertools.count()
        self._closed = False
        try:
            self.tokenizer_manager = TokenizerManager(self.server_args)
            self._run(self.tokenizer_manager.start())
        except BaseException:
            self._stop_loop()
            raise

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _requests(
        self,
        prompt: Prompt,
        sampling_params: Params,
        input_ids: Optional[Union[list[int], list[list[int]]]],
        **fields: Any,
    ) -> tuple[list[GenerateRequest], bool]:
        if (prompt is None) == (input_ids is None):
            raise ValueError("give exactly one of prompt and input_ids")
        texts: list[Optional[str]]
        ids: list[Optional[list[int]]]
        if prompt is not None:
            batched = isinstance(prompt, list)
            texts = list(prompt) if isinstance(prompt, list) else [prompt]
            ids = [None] * len(texts)
        else:
            assert input_ids is not None
            batched = bool(input_ids) and isinstance(input_ids[0], list)
            ids = [list(x) for x in input_ids] if batched else [list(input_ids)]  # type: ignore[arg-type]
            texts = [None] * len(ids)
        if isinstance(sampling_params, list):
            if len(sampling_params) != len(texts):
                raise ValueError("sampling_params must be one dict or one per prompt")
            plist = sampling_params
        else:
            plist = [sampling_params or {}] * len(texts)
        reqs = [
            GenerateRequest(
                rid=f"offline-{next(self._ids)}-{uuid.uuid4().hex[:8]}",
                text=t,
                input_ids=i,
                sampling_params=parse_sampling_params(dict(p)),
                **fields,
            )
            for t, i, p in zip(texts, ids, plist, strict=False)
        ]
        return reqs, batched

    async def _collect(self, req: GenerateRequest) -> list[dict[str, Any]]:
        final: dict[int, GenerateOutput] = {}
        async for out in self.tokenizer_manager.generate(req):
            if out.finished:
                final[out.index] = out
        return [_to_dict(final[i]) for i in sorted(final)]

    async def _generate_all(self, reqs: list[GenerateRequest]) -> list[dict[str, Any]]:
        groups = await asyncio.gather(*(self._collect(r) for r in reqs))
        return [d for g in groups for d in g]

    # -- public API -----------------------------------------------------------------------
    def generate(
        self,
        prompt: Prompt = None,
        sampling_params: Params = None,
        input_ids: Optional[Union[list[int], list[list[int]]]] = None,
        return_logprob: bool = False,
        top_logprobs_num: int = 0,
        stream: bool = False,
        logprob_start_len: int = -1,
    ) -> Any:
        """One prompt -> dict (a list of n dicts when n > 1); a list of prompts -> list.

        With stream=True (one prompt), an iterator of dicts whose text/output_ids are the
        increments of each update. return_logprob with logprob_start_len >= 0 adds
        meta_info input_token_logprobs for prompt positions max(logprob_start_len, 1) on.
        """
        reqs, batched = self._requests(
            prompt, sampling_params, input_ids,
            return_logprob=return_logprob, top_logprobs_num=top_logprobs_num, stream=stream,
            logprob_start_len=logprob_start_len,
        )  # fmt: skip
        if stream:
            if len(reqs) != 1:
                raise ValueError("stream=True takes one prompt")
            return self._stream(reqs[0])
        results = self._run(self._generate_all(reqs))
        if batched or len(results) > 1:
            return results
        return results[0]

    def _stream(self, req: GenerateRequest) -> Iterator[dict[str, Any]]:
        q: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for out in self.tokenizer_manager.generate(req):
                    q.put(_to_dict(out, delta=True))
                q.put(_DONE)
            except BaseException as e:
                q.put(e)

        fut = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not fut.done():  # the consumer stopped early
                fut.cancel()

    async def async_generate(
        self,
        prompt: Prompt = None,
        sampling_params: Params = None,
        input_ids: Optional[Union[list[int], list[list[int]]]] = None,
        return_logprob: bool = False,
        top_logprobs_num: int = 0,
        stream: bool = False,
        logprob_start_len: int = -1,
    ) -> Any:
        """Like generate, awaitable from any event loop; stream=True gives an async iterator."""
        reqs, batched = self._requests(
            prompt, sampling_params, input_ids,
            return_logprob=return_logprob, top_logprobs_num=top_logprobs_num, stream=stream,
            logprob_start_len=logprob_start_len,
        )  # fmt: skip
        if stream:
            if len(reqs) != 1:
                raise ValueError("stream=True takes one prompt")
            return self._astream(reqs[0])
        fut = asyncio.run_coroutine_threadsafe(self._generate_all(reqs), self._loop)
        results = await asyncio.wrap_future(fut)
        return results if batched or len(results) > 1 else results[0]

    async def _astream(self, req: GenerateRequest) -> AsyncIterator[dict[str, Any]]:
        it = self._stream(req)
        while True:
            item = await asyncio.to_thread(next, it, None)
            if item is None:
                return
            yield item

    def abort(self, rid: str) -> None:
        self._loop.call_soon_threadsafe(self.tokenizer_manager.abort, rid)

    def flush_cache(self) -> bool:
        return self._run(self.tokenizer_manager.flush_cache())

    def get_load(self) -> dict[str, Any]:
        return self._run(self.tokenizer_manager.get_load())

    def get_server_info(self) -> dict[str, Any]:
        return self.tokenizer_manager.server_info()

    def get_model_info(self) -> dict[str, Any]:
        return self.tokenizer_manager.model_info()

    @property
    def tokenizer(self) -> Any:
        return self.tokenizer_manager.tokenizer

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def stop() -> None:
            self.tokenizer_manager.shutdown()

        try:
            self._run(stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
