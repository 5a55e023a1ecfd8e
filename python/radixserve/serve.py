"""`python -m radixserve.serve` / `radixserve`: flags -> engine + Litestar app under uvicorn.

uvicorn (uvloop, httptools) owns the signals: Ctrl-C or SIGTERM ends the serve loop, the app's
lifespan then shuts the engine down (scheduler process included); the `finally` below covers
a start-up that fails before the lifespan ran its shutdown.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Optional

from radixserve.args import ServerArgs

logger = logging.getLogger("radixserve.serve")


def parse_args(argv: Optional[list[str]] = None) -> ServerArgs:
    parser = argparse.ArgumentParser(
        prog="radixserve",
        description="Serve an LLM over the OpenAI-compatible and SGLang-native HTTP APIs.",
    )
    ServerArgs.add_cli_args(parser)
    ns = parser.parse_args(argv)
    try:
        return ServerArgs.from_cli_args(ns)
    except ValueError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits


def uvicorn_config(app: Any, server_args: ServerArgs) -> Any:
    import uvicorn

    from radixserve.entrypoints.native.control import set_request_logging

    config = uvicorn.Config(
        app,
        host=server_args.host,
        port=server_args.port,
        loop="uvloop",
        http="httptools",
        log_level=server_args.log_level,
        access_log=True,  # always: /configure_logging switches the access logger itself
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
        # Requests are tiny next to generation time; keep the default backlog generous.
        backlog=2048,
    )
    set_request_logging(server_args.log_requests)  # after Config, which sets up uvicorn's loggers
    return config


def main(argv: Optional[list[str]] = None) -> None:
    server_args = parse_args(argv)
    logging.basicConfig(
        level=server_args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import uvicorn

    from radixserve.engine.tokenizer_manager import TokenizerManager
    from radixserve.entrypoints.app import create_app

    tm = TokenizerManager(server_args)
    app = create_app(tm, server_args)
    server = uvicorn.Server(uvicorn_config(app, server_args))
    logger.info(
        "radixserve starting on http://%s:%d (model: %s)",
        server_args.host,
        server_args.port,
        server_args.model_path or "default (SmolLM2-135M-Instruct GGUF)",
    )
    try:
        server.run()
    finally:
        tm.shutdown()  # idempotent; a no-op when the lifespan already shut the engine down
    if not server.started:
        sys.exit(1)


if __name__ == "__main__":
    main()
