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


# -- LLMNode(batch=True) over the local server --------------------------------------------

IN_PRICE, OUT_PRICE = 2.5, 10.0


def _map_graph(resource: str, **llm: Any) -> Any:
    from hush.core import END, PARENT, START, Each, GraphNode
    from hush.core.nodes.iteration import MapNode
    from hush.providers import LLMNode

    with GraphNode(name="job") as graph:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}) as items:
            node = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                **llm,
            )
            for key in ("content", "cost", "error"):
                node[key] >> PARENT[key]
            START >> node >> END
        for key in ("content", "cost", "error"):
            items[key] >> PARENT[key + "s"]
        START >> items >> END
    return graph


def _priced(register: Any, server: MockLLMServer, name: str) -> str:
    return str(
        register(
            name,
            server.base_url,
            input_cost_per_mtok=IN_PRICE,
            output_cost_per_mtok=OUT_PRICE,
            batch_window=0.05,
            batch_poll_interval=0.01,
        )
    )


async def test_a_batch_map_sends_one_batch_at_half_the_price(
    server: MockLLMServer, register: Any
) -> None:
    from hush.core import Hush

    name = _priced(register, server, "batched")
    qs = [f"question {i}: what is {i} times {i}?" for i in range(12)]
    sync = await Hush(_map_graph(name)).run({"qs": qs})
    server.reset()
    batched = await Hush(_map_graph(name, batch=True)).run({"qs": qs})

    paths = [r.path for r in server.requests]
    assert paths.count("/v1/chat/completions") == 0
    assert paths.count("/v1/batches") == 1
    (batch,) = server.batch_api.batches.values()
    assert batch.total == 12
    assert batched["errors"] == [None] * 12
    assert batched["contents"] == sync["contents"]
    for cost, full in zip(batched["costs"], sync["costs"], strict=True):
        assert cost == pytest.approx(full / 2)
    assert batched["$state"].cost == pytest.approx(sync["$state"].cost / 2)


async def test_a_failing_line_fails_its_item_only(server: MockLLMServer, register: Any) -> None:
    from hush.core import Hush

    name = _priced(register, server, "batched_fail")
    qs = ["first", "[[fail:400]] second", "third"]
    result = await Hush(_map_graph(name, batch=True)).run({"qs": qs})
    errors = result["errors"]
    assert errors[0] is None and errors[2] is None
    assert "line failed (HTTP 400)" in str(errors[1])
    assert "Injected fault: HTTP 400" in str(errors[1])
    assert result["contents"][0] and result["contents"][2]


async def test_an_expired_batch_fails_its_items_clearly(
    server: MockLLMServer, register: Any
) -> None:
    from hush.core import Hush

    name = _priced(register, server, "batched_expired")
    server.batch_api.configure(outcome="expired")
    result = await Hush(_map_graph(name, batch=True)).run({"qs": ["a", "b"]})
    for error in result["errors"]:
        assert "ended 'expired' without answering" in str(error)


def test_batch_and_stream_are_refused_together() -> None:
    from hush.core.errors import GraphDefinitionError
    from hush.providers import LLMNode

    with pytest.raises(GraphDefinitionError, match="LLMNode 'x': batch=True cannot be combined"):
        LLMNode(name="x", resource_key="r", inputs={"messages": []}, batch=True, stream=True)


def test_lines_split_at_the_request_and_byte_caps() -> None:
    from hush.providers.batch_api.lines import custom_id, request_line, split

    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(7)]
    lines = {custom_id(body): request_line(custom_id(body), body) for body in bodies}
    assert len(lines) == 7
    assert [len(group) for group in split(lines, max_requests=3)] == [3, 3, 1]
    size = len(next(iter(lines.values())))
    assert [len(group) for group in split(lines, max_bytes=2 * size + 1)] == [2, 2, 2, 1]
    reordered = {"messages": bodies[0]["messages"], "model": "m"}
    assert custom_id(reordered) == custom_id(bodies[0])


async def test_service_tier_reaches_the_request_body(server: MockLLMServer, register: Any) -> None:
    from hush.core import Hush

    name = register("flex", server.base_url, service_tier="flex")
    result = await Hush(_map_graph(name)).run({"qs": ["one", "two"]})
    assert result["errors"] == [None, None]
    bodies = [r.body for r in server.requests if r.path == "/v1/chat/completions"]
    assert len(bodies) == 2
    assert all(isinstance(b, dict) and b.get("service_tier") == "flex" for b in bodies)


async def test_an_expired_batch_is_sent_synchronously_with_batch_fallback_sync(
    server: MockLLMServer, register: Any
) -> None:
    from hush.core import Hush

    name = register(
        "batched_fallback",
        server.base_url,
        batch_window=0.05,
        batch_poll_interval=0.01,
        batch_fallback="sync",
    )
    server.batch_api.configure(outcome="expired")
    result = await Hush(_map_graph(name, batch=True)).run({"qs": ["a", "b", "c"]})
    assert result["errors"] == [None] * 3
    assert all(result["contents"])
    paths = [r.path for r in server.requests]
    assert paths.count("/v1/batches") == 1
    assert paths.count("/v1/chat/completions") == 3


async def test_flex_capacity_unavailable_falls_back_to_the_standard_tier(
    server: MockLLMServer, register: Any
) -> None:
    from hush.core import Hush

    name = register(
        "flex_fallback", server.base_url, service_tier="flex", service_tier_fallback=True
    )
    result = await Hush(_map_graph(name)).run({"qs": ["[[flex-unavailable]] one", "two"]})
    assert result["errors"] == [None, None]
    assert all(result["contents"])
    sent = [r for r in server.requests if r.path == "/v1/chat/completions"]
    tiers = sorted(
        (str(r.body.get("service_tier")), r.status) for r in sent if isinstance(r.body, dict)
    )
    assert tiers == [("None", 200), ("flex", 200), ("flex", 429)]


async def test_flex_capacity_unavailable_fails_clearly_without_the_fallback(
    server: MockLLMServer, register: Any
) -> None:
    from hush.core import Hush

    name = register("flex_only", server.base_url, service_tier="flex", max_retries=1)
    result = await Hush(_map_graph(name)).run({"qs": ["[[flex-unavailable]] one"]})
    (error,) = result["errors"]
    assert "HTTP 429" in str(error) and "flex processing capacity" in str(error)
    sent = [r.body for r in server.requests if r.path == "/v1/chat/completions"]
    assert len(sent) == 2
    assert all(isinstance(b, dict) and b.get("service_tier") == "flex" for b in sent)


async def test_a_cancelled_run_resumed_re_attaches_to_its_batch(
    server: MockLLMServer, register: Any, tmp_path: Any
) -> None:
    import asyncio

    from hush.core import Hush

    name = _priced(register, server, "batched_resume")
    db = tmp_path / "run.db"
    qs = [f"question {i}" for i in range(4)]
    server.batch_api.configure(turnaround=None)
    first = asyncio.create_task(
        Hush(_map_graph(name, batch=True)).run({"qs": qs}, checkpoint=db, run_id="r")
    )
    while not any(r.path.startswith("/v1/batches/") for r in server.requests):
        await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    server.batch_api.release()

    again = await Hush(_map_graph(name, batch=True)).run(
        {"qs": [*qs, "question 4"]}, checkpoint=db, run_id="r"
    )
    assert again["errors"] == [None] * 5
    assert [b.total for b in server.batch_api.batches.values()] == [4, 1]
    sync = await Hush(_map_graph(name)).run({"qs": [*qs, "question 4"]})
    assert again["contents"] == sync["contents"]
    assert again["$state"].cost == pytest.approx(sync["$state"].cost / 2)
