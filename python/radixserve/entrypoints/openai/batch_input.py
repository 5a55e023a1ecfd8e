"""Reading a batch input file: JSONL lines checked the way OpenAI's validation step does.

Structural problems (bad JSON, missing custom_id, duplicate custom_id, a url other than the
batch's endpoint, a method other than POST, a body that is not an object) fail the whole batch
with one entry per bad line in `errors`; a body the endpoint itself rejects is not checked
here: it runs and lands in the error file, as with OpenAI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

MAX_LINES = 50_000
MAX_REPORTED_ERRORS = 100


@dataclass
class BatchLine:
    index: int  # 0-based line number among the non-blank lines
    custom_id: str
    body: dict[str, Any]


def _error(code: str, message: str, line: int, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def parse_batch_input(data: bytes, endpoint: str) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """(lines, errors); `line` in errors is 1-based, as in the file."""
    lines: list[BatchLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    raw_lines = data.split(b"\n")
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        if len(lines) + len(errors) >= MAX_LINES:
            errors.append(_error("too_many_requests", f"A batch holds at most {MAX_LINES} "
                                 "requests.", number))  # fmt: skip
            break
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            errors.append(_error("invalid_json_line", f"This line is not valid JSON: {e}",
                                 number))  # fmt: skip
            continue
        if not isinstance(obj, dict):
            errors.append(_error("invalid_json_line", "A line must be a JSON object.", number))
            continue
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_error("missing_required_parameter", "custom_id is required and must "
                                 "be a non-empty string.", number, "custom_id"))  # fmt: skip
            continue
        if custom_id in seen:
            errors.append(_error("duplicate_custom_id", f"The custom_id {custom_id!r} is used "
                                 "more than once.", number, "custom_id"))  # fmt: skip
            continue
        seen.add(custom_id)
        if str(obj.get("method", "POST")).upper() != "POST":
            errors.append(_error("invalid_method", "method must be POST.", number, "method"))
            continue
        if obj.get("url") != endpoint:
            errors.append(_error("mismatched_url", f"url {obj.get('url')!r} differs from the "
                                 f"batch's endpoint {endpoint!r}.", number, "url"))  # fmt: skip
            continue
        body = obj.get("body")
        if not isinstance(body, dict):
            errors.append(_error("missing_required_parameter", "body is required and must be a "
                                 "JSON object.", number, "body"))  # fmt: skip
            continue
        lines.append(BatchLine(len(lines), custom_id, body))
    if not lines and not errors:
        errors.append(_error("empty_file", "The input file has no requests.", 0))
    return lines, errors[:MAX_REPORTED_ERRORS]
