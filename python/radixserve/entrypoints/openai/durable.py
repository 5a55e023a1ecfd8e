"""Files, batches and stored responses: their routes, and their start and stop in the app's
lifespan (open the store, fail interrupted background responses, resume batches)."""

from __future__ import annotations

from typing import Any

from radixserve.entrypoints.openai import responses_routes, serving_batches, serving_files
from radixserve.entrypoints.openai.batch_runner import BatchRunner
from radixserve.entrypoints.openai.serving_responses import ServingResponses
from radixserve.entrypoints.openai.store_services import StoreServices
from radixserve.entrypoints.state import ServerState
from radixserve.store import open_store

HANDLERS = [*serving_files.HANDLERS, *serving_batches.HANDLERS, *responses_routes.HANDLERS]


def start_durable(state: ServerState) -> StoreServices:
    """Call from the lifespan once the engine is up (batches resume running at once)."""
    args = state.server_args
    store, blobs = open_store(args.data_dir)
    services = StoreServices(store=store, blobs=blobs, max_file_size=args.max_file_size)
    services.responses = ServingResponses(state.chat, store)
    services.responses.mark_interrupted()
    execute = serving_batches.line_executor(state)
    services.batches = BatchRunner(store, blobs, execute, args.batch_concurrency)
    services.batches.resume()
    return services


async def stop_durable(services: Any) -> None:
    """Stop the work of this process; batches keep their state and resume on the next start."""
    if services is None:
        return
    await services.batches.stop()
    await services.responses.stop()
    services.store.close()
