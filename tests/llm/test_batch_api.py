"""The local server's Batch API, driven by the real ``openai`` SDK as the strict counterpart."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import AsyncOpenAI, NotFoundError
from openai.types import Batch, FileObject

from hush.testing import MockLLMServer


def _line(custom_id: str, text: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
    }


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _client(server: MockLLMServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


async def _submit(client: AsyncOpenAI, lines: list[dict[str, Any]]) -> Batch:
    upload = await client.files.create(file=("in.jsonl", _jsonl(lines)), purpose="batch")
    FileObject.model_validate(upload.to_dict())
    assert upload.purpose == "batch" and upload.bytes == len(_jsonl(lines))
    batch = await client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    Batch.model_validate(batch.to_dict())
    return batch


async def _results(client: AsyncOpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    content = await client.files.content(file_id)
    rows = [json.loads(raw) for raw in content.text.splitlines() if raw.strip()]
    return {row["custom_id"]: row for row in rows}


async def test_a_batch_answers_every_line_like_chat_completions(server: MockLLMServer) -> None:
    client = _client(server)
    lines = [_line(f"id-{i}", f"question {i}") for i in range(5)]
    batch = await _submit(client, lines)
    assert batch.status == "in_progress"
    assert batch.request_counts is not None and batch.request_counts.total == 5

    done = await client.batches.retrieve(batch.id)
    Batch.model_validate(done.to_dict())
    assert done.status == "completed" and done.error_file_id is None
    assert done.request_counts is not None and done.request_counts.completed == 5
    answers = await _results(client, done.output_file_id)
    assert sorted(answers) == [f"id-{i}" for i in range(5)]

    sync = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "question 3"}]
    )
    line = answers["id-3"]["response"]
    assert line["status_code"] == 200
    assert line["body"]["choices"][0]["message"]["content"] == sync.choices[0].message.content
    assert sync.usage is not None
    usage = line["body"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        sync.usage.prompt_tokens,
        sync.usage.completion_tokens,
    )
    assert sum(r.path == "/v1/chat/completions" for r in server.requests) == 1


async def test_a_failing_line_goes_to_the_error_file_only(server: MockLLMServer) -> None:
    client = _client(server)
    lines = [_line("good", "fine"), _line("bad", "[[fail:400]] broken"), _line("ok", "also")]
    batch = await _submit(client, lines)
    done = await client.batches.retrieve(batch.id)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    assert sorted(await _results(client, done.output_file_id)) == ["good", "ok"]
    errors = await _results(client, done.error_file_id)
    assert list(errors) == ["bad"]
    assert errors["bad"]["response"]["status_code"] == 400
    assert "Injected fault: HTTP 400" in errors["bad"]["response"]["body"]["error"]["message"]


async def test_turnaround_holds_a_batch_in_progress_until_released(
    server: MockLLMServer,
) -> None:
    client = _client(server)
    server.batch_api.configure(turnaround=None)
    batch = await _submit(client, [_line("a", "hello")])
    assert (await client.batches.retrieve(batch.id)).status == "in_progress"
    server.batch_api.release()
    assert (await client.batches.retrieve(batch.id)).status == "completed"


@pytest.mark.parametrize("outcome", ["failed", "expired"])
async def test_failed_and_expired_batches_answer_no_line(
    server: MockLLMServer, outcome: Any
) -> None:
    client = _client(server)
    server.batch_api.configure(outcome=outcome)
    batch = await _submit(client, [_line("a", "hello")])
    done = await client.batches.retrieve(batch.id)
    Batch.model_validate(done.to_dict())
    assert done.status == outcome and done.output_file_id is None


async def test_cancel_stops_a_batch_in_progress(server: MockLLMServer) -> None:
    client = _client(server)
    server.batch_api.configure(turnaround=None)
    batch = await _submit(client, [_line("a", "hello")])
    cancelled = await client.batches.cancel(batch.id)
    Batch.model_validate(cancelled.to_dict())
    assert cancelled.status == "cancelled"
    server.batch_api.release()
    assert (await client.batches.retrieve(batch.id)).status == "cancelled"


async def test_bad_input_is_refused_with_the_line_named(server: MockLLMServer) -> None:
    client = _client(server)
    upload = await client.files.create(
        file=("in.jsonl", _jsonl([_line("a", "x"), _line("a", "y")])), purpose="batch"
    )
    with pytest.raises(Exception, match="Line 2: duplicate custom_id 'a'"):
        await client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(NotFoundError, match="No such batch"):
        await client.batches.retrieve("batch-nope")
    with pytest.raises(NotFoundError, match="No such file"):
        await client.files.content("file-nope")
