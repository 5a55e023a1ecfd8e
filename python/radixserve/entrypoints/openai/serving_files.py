"""The File API: upload (multipart, streamed to disk), list, retrieve, content, delete.

The upload route has no app-wide body limit (that is --max-payload-size, for JSON bodies);
it counts the file's bytes itself against --max-file-size and answers 413 past it.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import multipart
from litestar import Request, Response, delete, get, post
from litestar.response import Stream

from radixserve.engine.io_struct import EngineError
from radixserve.entrypoints.openai.store_services import (
    StoreServices,
    get_services,
    list_page,
    not_found,
    page_args,
)
from radixserve.entrypoints.serving_common import encode, new_id
from radixserve.entrypoints.state import json_response
from radixserve.store import StoreFullError
from radixserve.store.blobs import BlobWriter, TooLargeError

PURPOSES = ("batch", "user_data", "assistants", "fine-tune", "vision", "evals")
MULTIPART_OVERHEAD = 64 * 1024  # headers and small fields beside the file part
MAX_FIELD = 4096
MAX_FILES_PAGE = 10_000


def file_record(file_id: str, filename: str, purpose: str, size: int) -> dict[str, Any]:
    return {
        "id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
        "filename": filename, "purpose": purpose, "status": "processed",
        "expires_at": None, "status_details": None,
    }  # fmt: skip


def get_file(services: StoreServices, file_id: str, param: str = "file_id") -> dict[str, Any]:
    record = services.store.get("file", file_id)
    if record is None:
        raise not_found("file", file_id, param)
    return record


async def receive_upload(request: Request[Any, Any, Any], services: StoreServices
                         ) -> tuple[BlobWriter, str, dict[str, str]]:  # fmt: skip
    """Stream the multipart body: the file part into a temp blob, small fields into a dict."""
    ctype = request.headers.get("content-type", "")
    kind, options = multipart.parse_options_header(ctype)
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise EngineError("Upload a file as multipart/form-data (fields: file, purpose).", 400)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > services.max_file_size + MULTIPART_OVERHEAD:
        raise EngineError(f"The file is larger than the limit of {services.max_file_size} "
                          "bytes.", 413, "file")  # fmt: skip
    writer: Optional[BlobWriter] = None
    filename = ""
    fields: dict[str, str] = {}
    current: Optional[str] = None
    parser = multipart.PushMultipartParser(options["boundary"], max_header_count=16)
    try:
        async for chunk in request.stream():
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    current = event.name
                    if current == "file":
                        if writer is not None:
                            raise EngineError("Send one file per upload.", 400, "file")
                        filename = event.filename or "upload"
                        writer = services.blobs.writer(services.max_file_size)
                    else:
                        fields[current] = ""
                elif event is None:
                    current = None
                elif current == "file" and writer is not None:
                    writer.write(bytes(event))
                elif current is not None:
                    fields[current] += bytes(event).decode("utf-8", "replace")
                    if len(fields[current]) > MAX_FIELD:
                        raise EngineError(f"Form field {current!r} is too long.", 400, current)
        parser.close()
    except multipart.MultipartError as e:
        if writer is not None:
            writer.discard()
        raise EngineError(f"Malformed multipart body: {e}", 400) from None
    except TooLargeError as e:
        raise EngineError(str(e), 413, "file") from None
    except StoreFullError as e:
        raise EngineError(str(e), 507) from None
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is None:
        raise EngineError("The 'file' field is required.", 400, "file")
    return writer, filename, fields


@post("/v1/files", status_code=200, request_max_body_size=None)
async def upload_file(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = get_services(request)
    writer, filename, fields = await receive_upload(request, services)
    purpose = fields.get("purpose", "").strip()
    if purpose not in PURPOSES:
        writer.discard()
        raise EngineError(f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}.",
                          400, "purpose")  # fmt: skip
    file_id = new_id("file-")
    try:
        size = writer.commit(file_id)
        record = file_record(file_id, filename, purpose, size)
        services.store.put("file", record)
    except StoreFullError as e:
        services.blobs.delete(file_id)
        raise EngineError(str(e), 507) from None
    return json_response(encode(record))


@get("/v1/files")
async def list_files(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = get_services(request)
    limit, after, order = page_args(request, MAX_FILES_PAGE)
    purpose = request.query_params.get("purpose")
    where = {"purpose": purpose} if purpose else None
    records, more = services.store.page("file", limit=limit, after=after, order=order,
                                        where=where)  # fmt: skip
    return json_response(encode(list_page(records, more)))


@get("/v1/files/{file_id:str}")
async def retrieve_file(request: Request[Any, Any, Any], file_id: str) -> Response[bytes]:
    return json_response(encode(get_file(get_services(request), file_id)))


@get("/v1/files/{file_id:str}/content")
async def file_content(request: Request[Any, Any, Any], file_id: str) -> Stream:
    services = get_services(request)
    get_file(services, file_id)
    if not services.blobs.exists(file_id):
        raise EngineError(f"The content of file {file_id!r} is missing.", 404, "file_id")
    return Stream(content=services.blobs.read_chunks(file_id),
                  media_type="application/octet-stream")  # fmt: skip


@delete("/v1/files/{file_id:str}", status_code=200)
async def delete_file(request: Request[Any, Any, Any], file_id: str) -> Response[bytes]:
    services = get_services(request)
    get_file(services, file_id)
    # The record goes first: a crash in between leaves an unreferenced body, never a record
    # whose body is gone.
    services.store.delete("file", file_id)
    services.blobs.delete(file_id)
    return json_response(encode({"id": file_id, "object": "file", "deleted": True}))


HANDLERS = [upload_file, list_files, retrieve_file, file_content, delete_file]
