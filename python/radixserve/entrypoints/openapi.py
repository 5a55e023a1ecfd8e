"""OpenAPI schema (/openapi.json) and Swagger docs (/docs), from Litestar's own generator.

Handlers decode their raw bodies themselves (state.decode: 400 naming the field, never 422),
so Litestar cannot see a request body in their signatures. A route declares its body with
`operation_class=with_body(SomeStruct)`: the operation then carries the msgspec JSON schema
of that Struct (references inlined, so no shared components are needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Router
from litestar._openapi.plugin import handle_schema_path_not_found
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Operation, RequestBody, Schema
from litestar.openapi.spec.media_type import OpenAPIMediaType

import radixserve


@dataclass
class RawSchema(Schema):
    """A JSON schema given as a plain dict (msgspec's), emitted as is."""

    raw: dict[str, Any] = field(default_factory=dict)

    def to_schema(self) -> dict[str, Any]:
        return self.raw


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Replace each `{"$ref": "#/$defs/X"}` by X itself (a recursive type becomes `{}`)."""
    if isinstance(node, list):
        return [_inline(x, defs, seen) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.split("/")[-1]
        if name in seen:
            return {}
        return _inline(defs[name], defs, (*seen, name))
    return {k: _inline(v, defs, seen) for k, v in node.items()}


def body_schema(kind: Any) -> dict[str, Any]:
    schema = msgspec.json.schema(kind)
    defs = schema.pop("$defs", {})
    return dict(_inline(schema, defs))


def with_body(kind: Any) -> type[Operation]:
    """An Operation class whose request body is `kind` (a msgspec Struct) as JSON."""
    body = RequestBody(
        content={"application/json": OpenAPIMediaType(schema=RawSchema(raw=body_schema(kind)))},
        required=True,
    )

    @dataclass
    class BodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return BodyOperation


class _DocsRouter(Router):
    """Litestar's docs router at "/", minus what would shadow the API: its HTML catch-all
    `/{path}` 404 page (ours is the JSON error envelope) and the docs copy at `/`."""

    def register(self, value: Any) -> Any:
        if getattr(value, "fn", None) is handle_schema_path_not_found:
            return []
        paths = getattr(value, "paths", None)
        if isinstance(paths, set) and len(paths) > 1:
            paths.discard("/")
        return super().register(value)


def openapi_config() -> OpenAPIConfig:
    """The schema at /openapi.json, the Swagger UI at /docs."""
    return OpenAPIConfig(
        title="radixserve",
        version=radixserve.__version__,
        description="OpenAI-compatible and SGLang-native API of radixserve.",
        render_plugins=[SwaggerRenderPlugin(path="/docs")],
        openapi_router=_DocsRouter("/", route_handlers=[], include_in_schema=False),
    )
