"""HTTP clients per event loop for embedding and rerank resources, closed with their loop.

Connections belong to the loop that opened them (see :mod:`hush.providers.clients`);
each loop gets one client per resource key, replaced when the resource's settings
change (the old one, which calls in flight may still use, is kept until the loop
ends), and closed when the loop shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar


class LoopClient(Protocol):
    """What a per-loop client has: the settings it was made from, and a way to close."""

    resource: Any

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=LoopClient)


class _Clients:
    def __init__(self) -> None:
        self.clients: dict[str, LoopClient] = {}
        self.keeper: AsyncIterator[None] | None = None
        self.retired: list[LoopClient] = []

    async def aclose(self) -> None:
        clients = [*self.clients.values(), *self.retired]
        self.clients, self.retired = {}, []
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


async def _close_with_the_loop(owner: _Clients) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await owner.aclose()


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Clients] = weakref.WeakKeyDictionary()


def loop_client(key: str, resource: Any, make: Callable[[], C], kind: type[C]) -> C:
    """The running loop's client of ``kind`` for ``key``, made with ``make`` when there is
    none or ``resource`` changed."""
    loop = asyncio.get_running_loop()
    owner = _loops.get(loop)
    if owner is None:
        owner = _loops[loop] = _Clients()
        keeper = _close_with_the_loop(owner)
        step: Any = keeper.__anext__()
        with contextlib.suppress(StopIteration):
            step.send(None)
        owner.keeper = keeper
    client = owner.clients.get(key)
    if isinstance(client, kind) and client.resource == resource:
        return client
    if client is not None:
        owner.retired.append(client)
    fresh = make()
    owner.clients[key] = fresh
    return fresh
