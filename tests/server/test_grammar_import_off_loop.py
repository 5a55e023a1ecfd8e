"""xgrammar's first import (torch under it) takes 2-3 s: the HTTP process must do it on the
worker thread, never on the event loop that streams every other request's tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import asyncio, sys, threading
import msgspec
from radixserve.entrypoints.openai.protocol import ChatCompletionRequest
from radixserve.entrypoints.openai.serving_base import ServingBase

importers = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "xgrammar":
            importers.append(threading.current_thread().name)
        return None
sys.meta_path.insert(0, Spy())

def chat(**extra):
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    return msgspec.convert(body, ChatCompletionRequest)

async def main():
    await ServingBase.grammar_ready(chat())
    print("plain", "xgrammar" in sys.modules)
    await ServingBase.grammar_ready(chat(response_format={"type": "json_object"}))
    print("constrained", "xgrammar" in sys.modules, importers, threading.current_thread().name)

asyncio.run(main())
"""


def test_first_constrained_request_imports_xgrammar_off_the_loop() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "python")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.splitlines()  # fmt: skip
    assert out[0] == "plain False"  # nothing to parse: nothing loaded
    assert out[1].startswith("constrained True ['radixserve-tokenize")
    assert out[1].endswith(" MainThread")
