"""The fallback owner of clients made outside any ``client_scope()``: their event loop.

Each running loop gets one :class:`~hush.providers.client_scope.ClientScope`, closed when
the loop shuts down (``asyncio.run`` and ``anyio.run`` finalize async generators before
closing the loop; a small generator registered on the loop does the closing), so no
socket outlives its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from hush.providers.client_scope import ClientScope

__all__ = ["existing_loop_scope", "loop_scope"]


class _LoopScope(ClientScope):
    """A loop's scope, and the generator that closes it with the loop."""

    keeper: AsyncIterator[None] | None = None


async def _close_with_the_loop(scope: ClientScope) -> AsyncIterator[None]:
    """Yields once; finalized by the loop's shutdown, when it closes the clients."""
    try:
        yield
    finally:
        await scope.aclose()


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopScope] = (
    weakref.WeakKeyDictionary()
)


def loop_scope(loop: asyncio.AbstractEventLoop) -> ClientScope:
    """The scope of ``loop`` (the running loop), made and tied to the loop on first use."""
    scope = _loops.get(loop)
    if scope is None:
        scope = _loops[loop] = _LoopScope(loop)
        keeper = _close_with_the_loop(scope)
        step: Any = keeper.__anext__()
        with contextlib.suppress(StopIteration):
            step.send(None)  # registers the generator with the loop, runs it to its yield
        scope.keeper = keeper
    return scope


def existing_loop_scope(loop: asyncio.AbstractEventLoop) -> ClientScope | None:
    """The scope of ``loop`` if clients were made outside any scope on it, else ``None``."""
    return _loops.get(loop)
