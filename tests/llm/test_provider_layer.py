"""The provider layer through the engine, against strict and hostile local servers."""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hush import END, PARENT, START, Each, GraphNode, Hush, MapNode
from hush.observability import LocalTracer
from hush.providers import LLMNode, PromptNode, get_registry
from hush.testing import MockLLMServer
from tests.llm.conftest import SECRET


def batch(resource: str, cap: int = 50, **llm_options: Any) -> GraphNode:
    with GraphNode(name="b") as g:
        with MapNode(name="rows", inputs={"q": Each(PARENT["qs"])}, max_concurrency=cap) as m:
            p = PromptNode(name="p", inputs={"prompt": "{q}", "q": PARENT["q"]})
            llm = LLMNode(
                name="llm", resource_key=resource, inputs={"messages": p["messages"]}, **llm_options
            )
            llm["content"] >> PARENT["answer"]
            START >> p >> llm >> END
        m["answer"] >> PARENT["answers"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


@pytest.fixture
def resource() -> Iterator[Callable[..., str]]:
    """Register ``llm:<name>`` (no rpm: an unconfigured resource) for one test."""
    added: list[str] = []

    def add(name: str, base_url: str, **settings: Any) -> str:
        get_registry().register(
            f"llm:{name}",
            {"base_url": base_url, "api_key": SECRET, "model": "gpt-4o-mini", **settings},
        )
        added.append(f"llm:{name}")
        return name

    yield add
    for key in added:
        get_registry().unregister(key)


async def test_parallel_calls_to_an_unconfigured_resource_overlap(
    resource: Callable[..., str],
) -> None:
    async with MockLLMServer(latency=0.05) as server:
        name = resource("unlimited-3", server.base_url)
        with GraphNode(name="g") as g:
            nodes = []
            for i in range(3):
                p = PromptNode(name=f"p{i}", inputs={"prompt": f"question {i}"})
                llm = LLMNode(name=f"llm{i}", resource_key=name, inputs={"messages": p["messages"]})
                START >> p >> llm >> END
                nodes.append(llm)
        result = await Hush(g).run()
        assert result["$state"].status == "ok"
        assert server.peak_in_flight == 3


async def test_an_unconfigured_map_runs_at_its_cap_from_the_first_call(
    resource: Callable[..., str],
) -> None:
    async with MockLLMServer(latency=0.05) as server:
        name = resource("unlimited-24", server.base_url)
        engine = Hush(batch(name, cap=12))
        result = await engine.run({"qs": [f"q{i}" for i in range(24)]})
        assert result["errors"] == [None] * 24
        assert server.peak_in_flight == 12


def test_two_threads_share_one_resource_and_its_limit(resource: Callable[..., str]) -> None:
    with MockLLMServer(latency=0.01, rpm=1200, burst_seconds=0.1) as server:
        name = resource("shared-threads", server.base_url, rpm=1200)
        engine = Hush(batch(name))
        results: list[dict[str, Any]] = []
        errors: list[BaseException] = []

        def run(offset: int) -> None:
            try:
                results.append(engine.run_sync({"qs": [f"t{offset}-{i}" for i in range(15)]}))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - start
        assert errors == []
        assert all(r["errors"] == [None] * 15 for r in results) and len(results) == 2
        # 30 requests at 1,200/min take about 1.4 s whichever loop sends them.
        assert elapsed > 1.2
        assert server.status_counts.get(429, 0) <= 1


def test_run_sync_leaves_no_connection_open(resource: Callable[..., str]) -> None:
    with MockLLMServer(latency=0.01) as server:
        name = resource("sockets", server.base_url)
        engine = Hush(batch(name, cap=8))
        me = psutil.Process()

        def open_to_server() -> int:
            return sum(
                1
                for c in me.net_connections(kind="tcp")
                if c.raddr and c.raddr.port == server.port and c.status == "ESTABLISHED"
            )

        gc.collect()  # what earlier tests left behind is not this test's to answer for
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for run in range(3):
                result = engine.run_sync({"qs": [f"r{run}-{i}" for i in range(16)]})
                assert result["errors"] == [None] * 16
                assert open_to_server() == 0
            gc.collect()
        unclosed = [w for w in caught if "nclosed" in str(w.message)]
        assert [str(w.message) for w in unclosed] == []


async def test_a_day_long_retry_after_ends_the_map_at_once_with_a_clear_error(
    resource: Callable[..., str],
) -> None:
    async with MockLLMServer(fault_retry_after=86_400) as server:
        name = resource("daily-quota", server.base_url, rpm=600_000)
        start = time.monotonic()
        result = await Hush(batch(name)).run({"qs": [f"q{i} [[fail:429]]" for i in range(3)]})
        assert time.monotonic() - start < 5
        for error in result["errors"]:
            assert "retry after 86400 s" in error.message
            assert "max_retry_wait (120 s)" in error.message
            assert not error.retryable


async def test_a_refused_port_fails_every_item_fast_with_one_warning(
    resource: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = resource("refused", f"http://127.0.0.1:{port}/v1", backoff_base=0.2)
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    result = await Hush(batch(name, cap=10)).run({"qs": [f"q{i}" for i in range(50)]})
    elapsed = time.monotonic() - start
    assert elapsed < 40
    assert all(e is not None and "cannot connect" in e.message for e in result["errors"])
    provider_lines = [r for r in caplog.records if r.name.startswith("hush.providers")]
    assert 1 <= len(provider_lines) <= 3, [r.getMessage() for r in provider_lines]


async def test_an_echoed_key_appears_nowhere(
    resource: Callable[..., str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with MockLLMServer(echo_auth=True) as server:
        name = resource("echo", server.base_url)
        trace = tmp_path / "trace.jsonl"
        result = await Hush(batch(name)).run(
            {"qs": ["fine", "bad [[fail:400]]", "flaky [[fail-once:500]]"]},
            tracer=LocalTracer(trace),
        )
    error = result["errors"][1]
    assert "request headers: Authorization: Bearer ***" in error.message
    texts = [
        repr(result),
        json.dumps(result["$state"].to_dict(), default=str),
        error.traceback,
        trace.read_text(),
        caplog.text,
    ]
    for text in texts:
        assert SECRET not in text
