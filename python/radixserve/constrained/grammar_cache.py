"""Compiled grammars: a bounded LRU cache in front of the backend, compiling on a thread.

The scheduler asks for a key and gets a Future; the request waits in a grammar queue (not in
the batch) until the future is done, so a slow compile never stalls the running requests.
Identical keys share one compile, running or finished.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from radixserve.constrained.base import GrammarBackend, GrammarKey


class GrammarCache:
    def __init__(self, backend: GrammarBackend, capacity: int = 256, threads: int = 1) -> None:
        self.backend = backend
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[GrammarKey, Future[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grammar")
        self.hits = 0
        self.misses = 0
        self.compile_seconds = 0.0  # total time spent compiling (cold compiles only)

    def get(self, key: GrammarKey) -> Future[Any]:
        """A future of the compiled grammar; failed compiles are not kept."""
        with self._lock:
            fut = self._entries.get(key)
            if fut is not None and not (fut.done() and fut.exception() is not None):
                self._entries.move_to_end(key)
                self.hits += 1
                return fut
            self.misses += 1
            fut = self._pool.submit(self._compile, key)
            self._entries[key] = fut
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return fut

    def _compile(self, key: GrammarKey) -> Any:
        start = time.perf_counter()
        try:
            return self.backend.compile(key)
        finally:
            self.compile_seconds += time.perf_counter() - start

    def __len__(self) -> int:
        return len(self._entries)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
