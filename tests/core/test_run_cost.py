"""What a trivial ``engine.run`` no longer pays for, with nothing given up: options checked
once for a call with none; the run's closing keeps its cancel shield, also around a
closing that enters a cancel scope of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.extensions import RunScope, register, unregister
from hush.core.nodes.graph.graph_node import GraphNode as Graph
from hush.core.options import DEFAULT_OPTIONS, RunOptions, run_options
from hush.core.state import RunRecord


async def passthrough(v: int) -> dict[str, int]:
    return {"v": v}


def one_node() -> Hush:
    with GraphNode(name="one") as g:
        node = CodeNode(name="a", code_fn=passthrough, inputs={"v": PARENT["v"]})
        node["v"] >> PARENT["v"]
        START >> node >> END
    return Hush(g)


def test_the_options_of_a_call_with_none_are_the_checked_defaults() -> None:
    assert run_options() == DEFAULT_OPTIONS


async def test_a_call_with_no_options_and_one_with_deprecated_ones_both_run() -> None:
    engine = one_node()
    assert (await engine.run({"v": 3}))["v"] == 3
    with pytest.warns(DeprecationWarning, match="max_concurrency= is deprecated"):
        result = await engine.run({"v": 4}, max_concurrency=2)
    assert result["v"] == 4
    with pytest.raises(TypeError):
        await engine.run({"v": 5}, max_concurency=2)


class SlowToClose:
    """An extension whose closing waits until the test lets it finish."""

    name = "slow-to-close"
    reads_checkpoint = False

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = False

    def check(self, graph: Graph) -> None:
        return None

    @contextlib.asynccontextmanager
    async def open(self, scope: RunScope) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self.closing.set()
            await self.release.wait()
            self.closed = True

    def finish(self, record: RunRecord) -> None:
        return None


@pytest.fixture
def slow() -> Iterator[SlowToClose]:
    extension = SlowToClose()

    def factory(options: RunOptions) -> tuple[Any, ...]:
        return (extension,)

    register(factory)
    try:
        yield extension
    finally:
        unregister(factory)


async def test_a_closing_that_waits_is_shielded_from_its_cancelled_scope(
    slow: SlowToClose,
) -> None:
    started = asyncio.Event()
    scopes: list[anyio.CancelScope] = []

    async def hangs(v: int) -> dict[str, int]:
        started.set()
        await asyncio.Event().wait()
        return {"v": v}

    with GraphNode(name="g") as g:
        node = CodeNode(name="a", code_fn=hangs, inputs={"v": PARENT["v"]})
        START >> node >> END
    engine = Hush(g)

    async def runner() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await engine.run({"v": 1})

    task = asyncio.ensure_future(runner())
    async with asyncio.timeout(5):
        await started.wait()
        scopes[0].cancel()
        await slow.closing.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done(), "the cancelled scope cut the run's closing short"
    slow.release.set()
    await task
    assert slow.closed


class ScopedClose(SlowToClose):
    """An extension whose closing waits inside a cancel scope of its own."""

    @contextlib.asynccontextmanager
    async def open(self, scope: RunScope) -> AsyncIterator[None]:
        try:
            yield
        finally:
            with anyio.move_on_after(5):
                await asyncio.sleep(0)
            self.closed = True


async def test_a_closing_with_a_cancel_scope_of_its_own_leaves_the_next_run_alone() -> None:
    extension = ScopedClose()

    def factory(options: RunOptions) -> tuple[Any, ...]:
        return (extension,)

    register(factory)
    try:
        engine = one_node()
        for v in range(3):
            extension.closed = False
            assert (await engine.run({"v": v}))["v"] == v
            assert extension.closed
        await asyncio.sleep(0.01)
        assert (await engine.run({"v": 9}))["v"] == 9
    finally:
        unregister(factory)
