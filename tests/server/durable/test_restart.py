"""kill -9 in the middle of a 200-line batch: the restart finishes it with exactly one output
line per custom_id; earlier files and responses are intact; a background response in flight
at the crash is failed with a reason."""

from __future__ import annotations

import time

import openai

from .conftest import WAIT, DurableServer, Holder, chat_line, read_jsonl, upload, wait_batch

LINES = 200


def test_batch_survives_kill_9(holder: Holder) -> None:
    client = openai.OpenAI(base_url=holder.server.url + "/v1", api_key="x", max_retries=0)
    kept = client.files.create(file=("keep.txt", b"keep me\n"), purpose="user_data")
    stored = client.responses.create(input="Remember this.", max_output_tokens=3)
    fid = upload(client, [chat_line(f"line-{i}", f"Number {i}?") for i in range(LINES)])
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    deadline = time.monotonic() + WAIT
    while True:  # kill once some, but not all, lines are committed
        got = client.batches.retrieve(batch.id)
        assert got.request_counts is not None
        if got.status == "in_progress" and got.request_counts.completed >= 10:
            break
        assert got.status in ("validating", "in_progress"), got
        assert time.monotonic() < deadline
        time.sleep(0.2)
    in_flight = client.responses.create(input="Write a very long story.",
                                        max_output_tokens=2000, background=True)  # fmt: skip
    holder.server.kill()
    assert got.request_counts.completed < LINES

    holder.server = DurableServer(holder.server.data_dir, holder.server.log)
    client = openai.OpenAI(base_url=holder.server.url + "/v1", api_key="x", max_retries=0)
    done = wait_batch(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (LINES, 0)
    out = read_jsonl(client, done.output_file_id)
    assert len(out) == LINES
    assert sorted(x["custom_id"] for x in out) == sorted(f"line-{i}" for i in range(LINES))
    assert all(x["response"]["status_code"] == 200 for x in out)

    assert client.files.content(kept.id).content == b"keep me\n"
    assert client.responses.retrieve(stored.id).output_text == stored.output_text
    failed = client.responses.retrieve(in_flight.id)
    assert failed.status == "failed"
    assert failed.error is not None and "restart" in failed.error.message
