"""The response cache never fails a call: damaged files are misses, failed writes turn it
off, and only complete answers are stored. Real SQLite files, real HTTP to the local server."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode, ResponseCache
from hush.testing import MockLLMServer

PAGE = 4096
KEYS = ("content", "finish_reason", "cached", "error")


def batch(resource: str, **llm: Any) -> GraphNode:
    with GraphNode(name="cached") as graph:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=4) as items:
            node = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                **llm,
            )
            for key in KEYS:
                node[key] >> PARENT[key]
            START >> node >> END
        for key in KEYS:
            items[key] >> PARENT[key + "s"]
        START >> items >> END
    return graph


def questions(n: int) -> list[str]:
    return [f"question {i}: " + "tell me more " * 40 for i in range(n)]


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hush.providers.cache" and r.levelno >= logging.WARNING
    ]


def damage_pages(path: Path, first: int) -> int:
    """Overwrite every page of the SQLite file from page ``first`` (1-based) with garbage."""
    data = bytearray(path.read_bytes())
    pages = len(data) // PAGE
    assert pages > first, f"the test needs more than {first} pages, the file has {pages}"
    for page in range(first - 1, pages):
        data[page * PAGE : (page + 1) * PAGE] = b"\xa5" * PAGE
    path.write_bytes(bytes(data))
    return pages


async def test_a_cache_with_damaged_pages_is_a_miss_with_one_warning_and_calls_go_out(
    server: MockLLMServer,
    register: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = register("damaged", server.base_url)
    path = tmp_path / "answers.sqlite"
    engine = Hush(batch(name))
    first = await engine.run({"qs": questions(40)}, cache=path)
    assert first["errors"] == [None] * 40 and server.total_requests == 40
    damage_pages(path, first=3)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        sqlite3.connect(path).execute("SELECT COUNT(*), MAX(answer) FROM answers").fetchone()

    caplog.set_level(logging.WARNING, logger="hush.providers.cache")
    again = await engine.run({"qs": questions(40)}, cache=path)

    assert again["errors"] == [None] * 40
    assert all(content for content in again["contents"])
    sent = server.total_requests - 40
    assert sent == again["cacheds"].count(False) and sent > 0
    warnings = cache_warnings(caplog)
    read = [w for w in warnings if "cannot be read" in w]
    assert len(read) == 1 and str(path) in read[0] and "malformed" in read[0]
    assert len(warnings) <= 2, warnings
    assert all(str(path) in w for w in warnings)


async def test_a_file_that_is_not_a_database_is_not_used_and_not_touched(
    server: MockLLMServer,
    register: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = register("notadb", server.base_url)
    path = tmp_path / "answers.sqlite"
    garbage = b"these are my notes, not a database\n" * 200
    path.write_bytes(garbage)
    caplog.set_level(logging.WARNING, logger="hush.providers.cache")

    result = await Hush(batch(name)).run({"qs": questions(5)}, cache=path)

    assert result["errors"] == [None] * 5 and result["cacheds"] == [False] * 5
    assert server.total_requests == 5
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1 and str(path) in warnings[0] and "not a database" in warnings[0]
    assert path.read_bytes() == garbage
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        len(ResponseCache(path))


async def test_a_failed_write_turns_the_cache_off_for_the_run_with_one_warning(
    server: MockLLMServer,
    register: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = register("readonly", server.base_url)
    path = tmp_path / "answers.sqlite"
    cache = ResponseCache(path)
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON answers "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    caplog.set_level(logging.WARNING, logger="hush.providers.cache")
    store = ResponseCache(path)
    engine = Hush(batch(name))

    first = await engine.run({"qs": questions(12)}, cache=store)
    assert first["errors"] == [None] * 12
    await store.aflush()
    second = await engine.run({"qs": questions(12)}, cache=store)

    assert second["errors"] == [None] * 12 and second["cacheds"] == [False] * 12
    assert server.total_requests == 24
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1 and str(path) in warnings[0] and "disk says no" in warnings[0]
    store.close()


async def test_a_reply_cut_off_by_the_token_limit_is_not_cached(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("cut", server.base_url)
    path = tmp_path / "answers.sqlite"
    engine = Hush(batch(name, max_tokens=2))

    first = await engine.run({"qs": questions(3)}, cache=path)
    assert first["finish_reasons"] == ["length"] * 3
    second = await engine.run({"qs": questions(3)}, cache=path)

    assert second["cacheds"] == [False] * 3
    assert server.total_requests == 6
    assert len(ResponseCache(path)) == 0


async def test_store_incomplete_keeps_cut_off_replies(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("cut-kept", server.base_url)
    store = ResponseCache(tmp_path / "answers.sqlite", store_incomplete=True)
    engine = Hush(batch(name, max_tokens=2))

    await engine.run({"qs": questions(3)}, cache=store)
    second = await engine.run({"qs": questions(3)}, cache=store)

    assert second["cacheds"] == [True] * 3 and second["finish_reasons"] == ["length"] * 3
    assert server.total_requests == 3
    store.close()


@pytest.fixture
async def filtering_server() -> AsyncIterator[str]:
    """A loopback server whose every reply was stopped by the content filter."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        reply = {
            "id": "chatcmpl-filtered",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "I can"},
                    "finish_reason": "content_filter",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
        return web.Response(text=json.dumps(reply), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_a_reply_stopped_by_the_content_filter_is_not_cached(
    filtering_server: str, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("filtered", filtering_server)
    path = tmp_path / "answers.sqlite"
    engine = Hush(batch(name))

    first = await engine.run({"qs": questions(2)}, cache=path)
    assert first["finish_reasons"] == ["content_filter"] * 2 and first["errors"] == [None] * 2
    second = await engine.run({"qs": questions(2)}, cache=path)

    assert second["cacheds"] == [False, False]
    assert len(ResponseCache(path)) == 0
