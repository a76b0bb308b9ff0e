"""The checkpoint store interface the engine consults and writes to."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol


class CheckpointStore(Protocol):
    """Finished work of one run, keyed by a node or map-item path and a digest of its inputs.

    Paths look like ``graph/prepare`` for a node and ``graph/batch[17]`` for a
    map item (``graph/outer[2]/inner[5]`` when nested). The digest is that of
    the inputs the work ran with (see :func:`hush.checkpoint.digest`), so a
    saved result is only ever reused for the same inputs. Only successful work
    is stored, so failed nodes and items run again on resume. Lookups see what
    was saved before the store was opened.
    """

    @property
    def failed(self) -> bool:
        """Whether a write has failed (nothing more will be saved)."""

    def has(self, path: str) -> bool:
        """Whether anything is saved under ``path``, for any inputs."""

    def has_under(self, prefix: str) -> bool:
        """Whether anything is saved below ``prefix`` (a path ending in ``/``)."""

    def get(self, path: str, digest: str) -> Any | None:
        """Return what was saved under ``path`` for inputs ``digest``, or ``None``."""

    def put(self, path: str, digest: str, value: Any) -> None:
        """Persist ``value``; must not block the event loop."""

    async def put_durable(self, path: str, digest: str, value: Any) -> None:
        """Persist ``value`` and return once it is committed."""

    def put_pending(
        self, path: str, digest: str, value: Any, spend: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Persist ``value`` (and, in the same commit, ``spend``: what the work's LLM calls
        spent, per resource); the returned future is done once it is committed."""

    def put_pickled(
        self, path: str, digest: str, blob: bytes, spend: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Persist a value pickled already; the future is done once it is committed."""

    def mark_finished(self, status: str = "ok") -> None:
        """Record the run's final status."""

    async def aclose(self) -> None:
        """Write everything still queued and close the file."""
