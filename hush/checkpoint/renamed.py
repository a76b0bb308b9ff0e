"""The checkpoint store's former method names, kept working with a ``DeprecationWarning``.

``get`` is now ``load``; ``put``, ``put_durable``, ``put_pending`` and ``put_pickled`` are
now ``save`` (its future is done once the value is committed: await it to wait;
``pickled=True`` for a value pickled already).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Mapping
from typing import Any, Protocol


class _Saves(Protocol):
    def load(self, path: str, digest: str) -> Any | None: ...

    def save(
        self,
        path: str,
        digest: str,
        value: Any,
        *,
        usage: Mapping[str, Any] | None = None,
        pickled: bool = False,
    ) -> asyncio.Future[None]: ...


def _renamed(old: str, new: str) -> None:
    warnings.warn(
        f"CheckpointStore.{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3
    )


def _retrieved(future: asyncio.Future[None]) -> None:
    """Nobody awaits a ``put``: mark a failed commit's error as seen (later calls raise it)."""
    if not future.cancelled():
        future.exception()


class RenamedMethods:
    """``get``, ``put``, ``put_durable``, ``put_pending`` and ``put_pickled``, deprecated."""

    def get(self: _Saves, path: str, digest: str) -> Any | None:
        """Deprecated: use ``load``."""
        _renamed("get()", "load()")
        return self.load(path, digest)

    def put(self: _Saves, path: str, digest: str, value: Any) -> None:
        """Deprecated: use ``save`` (and drop, or await, the future it returns)."""
        _renamed("put()", "save()")
        self.save(path, digest, value).add_done_callback(_retrieved)

    async def put_durable(self: _Saves, path: str, digest: str, value: Any) -> None:
        """Deprecated: use ``await save(...)``."""
        _renamed("put_durable()", "await save()")
        await self.save(path, digest, value)

    def put_pending(
        self: _Saves, path: str, digest: str, value: Any, spend: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Deprecated: use ``save(..., usage=spend)``."""
        _renamed("put_pending()", "save()")
        return self.save(path, digest, value, usage=spend)

    def put_pickled(
        self: _Saves, path: str, digest: str, blob: bytes, spend: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Deprecated: use ``save(..., pickled=True)``."""
        _renamed("put_pickled()", "save(..., pickled=True)")
        return self.save(path, digest, blob, usage=spend, pickled=True)
