"""Runs after a bare call reuse the loop's connections and close only the clients they made.

Real sockets to the local server, counted with psutil (as in ``test_client_scope.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, MapNode
from hush.providers import LLMNode, PromptNode
from hush.providers.client_scope import current_scope
from hush.providers.clients import complete, get_client
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


def ask(resource: str) -> GraphNode:
    """One call to ``resource`` per key."""
    with GraphNode(name="g") as g:
        with MapNode(name="rows", inputs={"key": Each(PARENT["keys"])}) as m:
            p = PromptNode(name="p", inputs={"prompt": "hello {key}", "key": PARENT["key"]})
            llm = LLMNode(name="llm", resource_key=resource, inputs={"messages": p["messages"]})
            START >> p >> llm >> END
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


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
        result = await Hush(ask(name)).run({"keys": [run]})
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
        result = await Hush(ask(own)).run({"keys": [0, 1]})
        assert result["errors"] == [None, None]
        assert own_server.total_requests == 2
        assert open_to(own_server) == 0  # made by the run: closed with it
        assert open_to(lent_server) == 1  # the loop's: still open for the next call
        assert (await complete(lent, user("again"))).content is not None
        assert open_to(lent_server) == 1
