"""Who owns the HTTP clients: a visible scope, closed when it ends.

Every client a call makes (chat, embeddings, rerank, a Batch API collector) belongs to
the scope it was made in, and the scope closes them all when it exits::

    async with hush.providers.client_scope():
        await engine.run(...)      # or complete(), embed(), ...
    # every connection those calls opened is closed here

A run enters one around its nodes. Scopes on one event loop nest: an inner scope (a
nested run, a run inside your ``async with``) uses the clients of the outermost one, so
connections are reused across the runs of a session. Outside any scope (a bare
``complete()`` call), the event loop owns the clients and closes them when it shuts down
(see :mod:`hush.providers.loop_clients`); an outermost scope borrows those the loop
already has (so runs after a bare call reuse its connections) and closes only the
clients it made itself.

Connections belong to the loop that opened them: a scope serves only its own loop (a
thread running a loop of its own gets that loop's clients). A client whose resource's
settings changed is replaced; the old one, which calls in flight may still use, is closed
with the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = ["ClientScope", "client_scope", "current_scope", "scoped_client"]

logger = logging.getLogger(__name__)


class Client(Protocol):
    """What a scope holds: the settings a client was made from, and a way to close it."""

    resource: Any

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Client)


class ClientScope:
    """The clients of one scope on one event loop, by key."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lender: ClientScope | None = None) -> None:
        self._loop = weakref.ref(loop)
        self.lender = lender
        """A scope whose clients this one uses without owning them (the loop's)."""
        self.clients: dict[str, Client] = {}
        self.retired: list[Client] = []
        self.closed = False
        """Exited: clients made later belong to the loop instead."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop whose connections the clients hold."""
        return self._loop()

    def get(self, key: str, resource: Any, make: Callable[[], C], kind: type[C]) -> C:
        """The client of ``kind`` for ``key``, made with ``make`` when there is none or
        ``resource`` changed."""
        client = self.clients.get(key)
        if isinstance(client, kind) and client.resource == resource:
            return client
        if client is None and self.lender is not None:
            lent = self.lender.clients.get(key)
            if isinstance(lent, kind) and lent.resource == resource:
                return lent
        if client is not None:
            self.retired.append(client)
        fresh = make()
        self.clients[key] = fresh
        return fresh

    async def aclose(self) -> None:
        """Close every client now (they are made again on next use)."""
        if not self.clients and not self.retired:
            return
        clients = [*self.clients.values(), *self.retired]
        self.clients, self.retired = {}, []
        results = await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
        for client, result in zip(clients, results, strict=True):
            if isinstance(result, Exception):
                logger.warning("closing %r failed: %s", client, result)


_current: contextvars.ContextVar[ClientScope | None] = contextvars.ContextVar(
    "hush_client_scope", default=None
)


class client_scope:  # lower case: called like the function it was, ``client_scope()``
    """Own every client made inside; close them all on exit (see the module docstring).

    A class rather than a generator-based context manager: every run enters one, and
    this costs it a few microseconds less.
    """

    __slots__ = ("_scope", "_token")

    def __init__(self) -> None:
        self._scope: ClientScope | None = None
        self._token: contextvars.Token[ClientScope | None] | None = None

    async def __aenter__(self) -> ClientScope:
        loop = asyncio.get_running_loop()
        outer = _current.get()
        if outer is not None and outer.loop is loop and not outer.closed:
            return outer
        from hush.providers.loop_clients import existing_loop_scope

        scope = self._scope = ClientScope(loop, lender=existing_loop_scope(loop))
        self._token = _current.set(scope)
        return scope

    async def __aexit__(self, *exc: object) -> None:
        scope, token = self._scope, self._token
        if scope is None or token is None:
            return
        scope.closed = True
        with contextlib.suppress(ValueError):  # exited in another context than entered
            _current.reset(token)
        await scope.aclose()


def current_scope() -> ClientScope:
    """The scope that owns the clients made now: the innermost ``client_scope()`` of the
    running loop, else the loop's own (closed with the loop)."""
    scope = _current.get()
    loop = asyncio.get_running_loop()
    if scope is not None and scope.loop is loop and not scope.closed:
        return scope
    from hush.providers.loop_clients import loop_scope

    return loop_scope(loop)


def scoped_client(key: str, resource: Any, make: Callable[[], C], kind: type[C]) -> C:
    """The current scope's client of ``kind`` for ``key`` (see :meth:`ClientScope.get`)."""
    return current_scope().get(key, resource, make, kind)
