"""Files and batches through a real server with the openai SDK: every route and bad input."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import MAX_FILE_SIZE, Holder, chat_line, read_jsonl, upload, wait_batch

# -- files ------------------------------------------------------------------------------------


def test_file_upload_retrieve_list_content_delete(client: openai.OpenAI) -> None:
    data = b'{"a": 1}\n' * 1000
    f = client.files.create(file=("data.jsonl", data), purpose="user_data")
    assert (f.object, f.bytes, f.filename, f.purpose, f.status) == ("file", len(data),
                                                                     "data.jsonl", "user_data",
                                                                     "processed")  # fmt: skip
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).content == data
    g = client.files.create(file=("b.jsonl", b"x\n"), purpose="batch")
    ids = [x.id for x in client.files.list(purpose="user_data").data]
    assert f.id in ids and g.id not in ids
    first = client.files.list(limit=1, order="desc")
    assert first.data[0].id == g.id and first.has_more
    after = client.files.list(limit=1, order="desc", after=g.id)
    assert after.data[0].id == f.id
    assert [x.id for x in client.files.list(order="asc").data][-2:] == [f.id, g.id]
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(f.id)


def test_file_bad_input(client: openai.OpenAI, holder: Holder) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        client.files.create(file=("big.jsonl", b"x" * (MAX_FILE_SIZE + 1)), purpose="batch")
    assert e.value.status_code == 413
    assert e.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("a.jsonl", b"x"), purpose="nonsense")  # type: ignore[arg-type]
    assert bad.value.body["param"] == "purpose"  # type: ignore[index]
    url = holder.server.url + "/v1/files"
    no_file = httpx.post(url, data={"purpose": "batch"}, files={"other": ("x", b"1")})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    assert httpx.post(url, content=b"{}").status_code == 400
    assert httpx.get(url, params={"limit": "zero"}).status_code == 400
    assert httpx.get(url, params={"order": "sideways"}).status_code == 400


# -- batches ----------------------------------------------------------------------------------


def test_batch_runs_lines_and_reports_rejected_bodies(client: openai.OpenAI) -> None:
    lines = [chat_line(f"ok-{i}", f"Count to {i}") for i in range(6)]
    lines += [chat_line("empty", "x", messages=[]), chat_line("streamed", "x", stream=True),
              chat_line("neg", "x", max_tokens=-1)]  # fmt: skip
    fid = upload(client, lines)
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"k": "v"})  # fmt: skip
    assert batch.status == "validating" and batch.metadata == {"k": "v"}
    batch = wait_batch(client, batch.id)
    assert batch.status == "completed", batch
    counts = batch.request_counts
    assert counts is not None and (counts.total, counts.completed, counts.failed) == (9, 6, 3)
    assert batch.output_file_id and batch.error_file_id
    out = read_jsonl(client, batch.output_file_id)
    assert sorted(x["custom_id"] for x in out) == [f"ok-{i}" for i in range(6)]
    for x in out:
        assert x["id"].startswith("batch_req_") and x["error"] is None
        assert x["response"]["status_code"] == 200
        assert x["response"]["body"]["object"] == "chat.completion"
    errors = {x["custom_id"]: x["response"] for x in read_jsonl(client, batch.error_file_id)}
    assert set(errors) == {"empty", "streamed", "neg"}
    assert all(r["status_code"] == 400 and "error" in r["body"] for r in errors.values())
    assert errors["empty"]["body"]["error"]["param"] == "messages"
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    assert batch.id in [b.id for b in client.batches.list(limit=100).data]
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_batch_completions_endpoint(client: openai.OpenAI) -> None:
    line = {"custom_id": "c", "method": "POST", "url": "/v1/completions",
            "body": {"prompt": "Once upon", "max_tokens": 2}}  # fmt: skip
    fid = upload(client, [json.dumps(line)])
    batch = wait_batch(client, client.batches.create(
        input_file_id=fid, endpoint="/v1/completions", completion_window="24h").id)  # fmt: skip
    assert batch.status == "completed"
    out = read_jsonl(client, batch.output_file_id)
    assert out[0]["response"]["body"]["object"] == "text_completion"


def test_batch_malformed_lines_fail_validation(client: openai.OpenAI) -> None:
    lines = [
        chat_line("a", "hi"),
        "{not json",
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        chat_line("a", "again"),
        json.dumps({"custom_id": "u", "method": "POST", "url": "/v1/completions", "body": {}}),
        json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions"}),
    ]
    fid = upload(client, lines)
    batch = wait_batch(client, client.batches.create(
        input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h").id)  # fmt: skip
    assert batch.status == "failed" and batch.failed_at
    assert batch.errors is not None and batch.errors.data is not None
    got = {(e.line, e.code) for e in batch.errors.data}
    assert got == {(2, "invalid_json_line"), (3, "missing_required_parameter"),
                   (4, "duplicate_custom_id"), (5, "mismatched_url"),
                   (6, "missing_required_parameter")}  # fmt: skip


def test_batch_bad_requests(client: openai.OpenAI) -> None:
    fid = upload(client, [chat_line("a", "hi")])
    other = upload(client, [chat_line("a", "hi")], purpose="user_data")
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=other, endpoint="/v1/chat/completions",
                              completion_window="24h")  # fmt: skip
    assert e.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions",
                              completion_window="24h")  # fmt: skip
    for endpoint, window in (("/v1/embeddings", "24h"), ("/v1/nope", "24h"),
                             ("/v1/chat/completions", "tomorrow")):  # fmt: skip
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=fid, endpoint=endpoint,  # type: ignore[arg-type]
                                  completion_window=window)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_missing")


def test_batch_cancel(client: openai.OpenAI) -> None:
    fid = upload(client, [chat_line(f"c{i}", f"Write about {i}", max_tokens=32)
                          for i in range(80)])  # fmt: skip
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = wait_batch(client, batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at
    assert batch.request_counts is not None and batch.request_counts.completed < 80
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_batch_expires_past_its_window(client: openai.OpenAI) -> None:
    fid = upload(client, [chat_line(f"e{i}", f"Story {i}", max_tokens=24) for i in range(60)])
    batch = wait_batch(client, client.batches.create(
        input_file_id=fid, endpoint="/v1/chat/completions",
        completion_window="1s").id)  # type: ignore[arg-type]  # fmt: skip
    if batch.status == "completed":  # a very fast machine beat the window
        return
    assert batch.status == "expired" and batch.expired_at
    done = read_jsonl(client, batch.output_file_id) if batch.output_file_id else []
    errors = read_jsonl(client, batch.error_file_id)
    assert all(e["error"]["code"] == "batch_expired" for e in errors)
    assert len(done) + len(errors) == 60
