"""The checkpoint store interface the scheduler consults and writes to."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class CheckpointStore(Protocol):
    """Finished work of one run, keyed by a node or map-item path.

    Paths look like ``graph/prepare`` for a node and ``graph/batch[17]`` for a
    map item (``graph/outer[2]/inner[5]`` when nested). Only successful work is
    stored, so failed nodes and items run again on resume.
    """

    def get(self, path: str) -> Any | None:
        """Return what was saved under ``path``, or ``None`` if it was not finished."""

    def put(self, path: str, value: Any) -> None:
        """Persist ``value`` for ``path``; must not block the event loop."""

    async def put_durable(self, path: str, value: Any) -> None:
        """Persist ``value`` for ``path`` and return once it is committed."""

    def put_pending(self, path: str, value: Any) -> asyncio.Future[None]:
        """Persist ``value`` for ``path``; the returned future is done once it is committed."""

    def mark_finished(self, status: str = "ok") -> None:
        """Record the run's final status."""

    async def aclose(self) -> None:
        """Write everything still queued and close the file."""
