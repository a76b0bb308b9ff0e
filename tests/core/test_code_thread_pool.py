"""The seam for where sync code functions run (``hush.core.nodes.code_node.thread_pool``):
a host whose event loop anyio cannot keep threads for (a Ray actor's) gives its own pool."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.code_node import thread_pool

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def where() -> dict[str, Any]:
    return {"thread": threading.current_thread().name, "marker": marker.get()}


def graph() -> GraphNode:
    with GraphNode(name="pool") as root:
        node = CodeNode(name="where", code_fn=where)
        node["thread"] >> PARENT["thread"]
        node["marker"] >> PARENT["marker"]
        START >> node >> END
    return root


async def test_sync_code_runs_on_the_pool_given_with_the_callers_context() -> None:
    with ThreadPoolExecutor(2, thread_name_prefix="given-pool") as pool:
        token = thread_pool.set(pool)
        marker_token = marker.set("from the caller")
        try:
            result = await Hush(graph()).run({})
        finally:
            marker.reset(marker_token)
            thread_pool.reset(token)
    assert result["thread"].startswith("given-pool")
    assert result["marker"] == "from the caller"


async def test_without_a_pool_sync_code_runs_on_anyio_threads() -> None:
    result = await Hush(graph()).run({})
    assert not result["thread"].startswith("given-pool")
    assert result["thread"] != threading.current_thread().name
