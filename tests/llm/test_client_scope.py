"""Clients are owned by a visible scope: ``async with client_scope()`` closes what it made.

Real sockets to the local server, counted with psutil: inside a scope the calls' clients
stay open and are reused (by nested scopes and by runs too); on exit every connection
they opened is closed. Outside any scope the event loop owns the clients, and runs
borrow them (leaving them open) while still closing the clients they made themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psutil

import hush.providers
from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, MapNode
from hush.providers import LLMNode, PromptNode, get_registry
from hush.providers.client_scope import client_scope, current_scope
from hush.providers.clients import complete, get_client
from hush.providers.embedding import embed
from hush.testing import MockLLMServer


def open_to(server: MockLLMServer) -> int:
    """This process's established connections to ``server``."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == server.port and c.status == "ESTABLISHED"
    )


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def ask_all(resource: str) -> GraphNode:
    with GraphNode(name="g") as g:
        with MapNode(name="rows", inputs={"q": Each(PARENT["qs"])}) as m:
            p = PromptNode(name="p", inputs={"prompt": "{q}", "q": PARENT["q"]})
            llm = LLMNode(name="llm", resource_key=resource, inputs={"messages": p["messages"]})
            START >> p >> llm >> END
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


async def test_a_scope_closes_every_client_it_made_on_exit(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("scoped", server.base_url)
    get_registry().register("embedding:scoped", {"base_url": server.base_url, "model": "e"})
    try:
        async with hush.providers.client_scope() as scope:
            await asyncio.gather(*(complete(name, user(f"q{i}")) for i in range(4)))
            await embed("embedding:scoped", ["one", "two"])
            assert set(scope.clients) == {"llm:scoped", "embedding:scoped"}
            assert open_to(server) > 0
        assert open_to(server) == 0
        assert scope.clients == {}
    finally:
        get_registry().unregister("embedding:scoped")


async def test_nested_scopes_and_runs_use_the_outermost_scopes_clients(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("shared", server.base_url)
    async with client_scope() as outer:
        client = get_client(name)
        async with client_scope() as inner:
            assert inner is outer and get_client(name) is client
        await complete(name, user("still open"))
        for run in range(2):
            result = await Hush(ask_all(name)).run({"qs": [f"r{run}-{i}" for i in range(4)]})
            assert result["errors"] == [None] * 4
            assert get_client(name) is client
        assert open_to(server) > 0
    assert open_to(server) == 0


async def test_outside_a_scope_the_loop_owns_the_clients(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("unscoped", server.base_url)
    async with client_scope():
        scoped = get_client(name)
    loop_owned = get_client(name)
    assert loop_owned is not scoped
    assert current_scope().clients["llm:unscoped"] is loop_owned
    assert (await complete(name, user("hi"))).content is not None


def test_a_scope_serves_only_its_own_event_loop(register: Callable[..., str]) -> None:
    """A thread running its own loop inside a scope (the context is copied) gets that
    loop's clients: connections never cross loops."""
    with MockLLMServer() as server:
        name = register("two-loops", server.base_url)

        async def main() -> None:
            async with client_scope() as scope:
                mine = get_client(name)

                def elsewhere() -> str | None:
                    async def call() -> str | None:
                        assert get_client(name) is not mine
                        return (await complete(name, user("from a thread"))).content

                    return asyncio.run(call())

                assert await asyncio.to_thread(elsewhere) is not None
                assert list(scope.clients.values()) == [mine]

        asyncio.run(main())


async def test_a_run_closes_the_clients_it_made_when_it_ends(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("one-run", server.base_url)
    result = await Hush(ask_all(name)).run({"qs": [f"q{i}" for i in range(6)]})
    assert result["errors"] == [None] * 6
    assert server.total_requests == 6
    assert open_to(server) == 0


async def test_runs_after_a_bare_call_reuse_the_loops_client_and_leave_it_open(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("loop-owned", server.base_url)
    await complete(name, user("warm up"))
    loop_owned = get_client(name)
    assert current_scope().clients[f"llm:{name}"] is loop_owned
    connections = open_to(server)
    assert connections == 1

    async def client_in_the_run() -> dict[str, bool]:
        return {"lent": get_client(name) is loop_owned}

    with GraphNode(name="check") as check:
        node = CodeNode(name="which", code_fn=client_in_the_run, outputs={"lent": PARENT})
        START >> node >> END
    for run in range(3):
        result = await Hush(ask_all(name)).run({"qs": [run]})
        assert result["errors"] == [None]
        assert open_to(server) == connections  # the same connection, still open
        assert (await Hush(check).run())["lent"] is True
    assert get_client(name) is loop_owned
    assert server.total_requests == 4


async def test_a_run_still_closes_the_clients_it_made_beside_borrowed_ones(
    register: Callable[..., str],
) -> None:
    async with MockLLMServer() as lent_server, MockLLMServer() as own_server:
        lent = register("lent", lent_server.base_url)
        own = register("own", own_server.base_url)
        await complete(lent, user("warm up"))
        result = await Hush(ask_all(own)).run({"qs": [0, 1]})
        assert result["errors"] == [None, None]
        assert own_server.total_requests == 2
        assert open_to(own_server) == 0  # made by the run: closed with it
        assert open_to(lent_server) == 1  # the loop's: still open for the next call
        assert (await complete(lent, user("again"))).content is not None
        assert open_to(lent_server) == 1
