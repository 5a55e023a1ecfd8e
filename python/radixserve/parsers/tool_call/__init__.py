"""Tool-call detectors, one per output format, chosen by --tool-call-parser."""

from __future__ import annotations

from radixserve.parsers.tool_call.base import (
    ParseResult,
    PartialCall,
    StreamingToolParser,
    ToolCallDelta,
    ToolCallDetector,
)
from radixserve.parsers.tool_call.hermes import HermesDetector
from radixserve.parsers.tool_call.llama3 import Llama3Detector
from radixserve.parsers.tool_call.mistral import MistralDetector
from radixserve.parsers.tool_call.pythonic import PythonicDetector

DETECTORS: dict[str, type[ToolCallDetector]] = {
    "hermes": HermesDetector,
    "qwen25": HermesDetector,  # Qwen2.5 writes the hermes format
    "llama3": Llama3Detector,
    "mistral": MistralDetector,
    "pythonic": PythonicDetector,
}


def make_detector(name: str) -> ToolCallDetector:
    return DETECTORS[name]()


__all__ = [
    "DETECTORS",
    "ParseResult",
    "PartialCall",
    "StreamingToolParser",
    "ToolCallDelta",
    "ToolCallDetector",
    "make_detector",
]
