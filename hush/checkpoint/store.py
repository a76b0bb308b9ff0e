"""The checkpoint store interface the engine consults and writes to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class CheckpointStore(Protocol):
    """Finished work of one run, keyed by a node or map-item path and a digest of its inputs.

    Paths look like ``graph/prepare`` for a node and ``graph/batch[17]`` for a
    map item (``graph/outer[2]/inner[5]`` when nested). The digest is that of
    the inputs the work ran with (see :func:`hush.checkpoint.digest`), so a
    saved result is only ever reused for the same inputs. Only successful work
    is stored, so failed nodes and items run again on resume. Lookups see what
    was saved before the store was opened. One verb saves (:meth:`save`), one
    reads (:meth:`load`).
    """

    @property
    def failed(self) -> bool:
        """Whether a write has failed (nothing more will be saved)."""

    def has(self, path: str) -> bool:
        """Whether anything is saved under ``path``, for any inputs."""

    def has_under(self, prefix: str) -> bool:
        """Whether anything is saved below ``prefix`` (a path ending in ``/``)."""

    def load(self, path: str, digest: str) -> Any | None:
        """Return what was saved under ``path`` for inputs ``digest``, or ``None``."""

    def save(
        self,
        path: str,
        digest: str,
        value: Any,
        *,
        usage: Mapping[str, Any] | None = None,
        pickled: bool = False,
    ) -> asyncio.Future[None]:
        """Save ``value`` without blocking the event loop (``pickled``: ``value`` is bytes
        pickled already), with ``usage`` (what the work consumed) in the same commit; the
        returned future is done once it is committed (await it to wait, or drop it)."""

    def queue(
        self,
        path: str,
        digest: str,
        value: Any,
        *,
        usage: Mapping[str, Any] | None = None,
        pickled: bool = False,
    ) -> int:
        """:meth:`save` without a future: return the entry's number (increasing; entries
        are committed in that order) for :meth:`committed` and :meth:`durable`."""

    def queue_result(
        self, path: str, digest: str, value: Any, usage: Mapping[str, Any] | None, shown: str
    ) -> int:
        """:meth:`queue` for a map item's result, pickled with the others of its event-loop
        turn (at the latest before its map's last commit); a value that does not pickle is
        reported to :attr:`refused` as ``shown`` rather than raised."""

    refused: Callable[[str, str], None]
    """Told the path and the reason when a result of :meth:`queue_result` is not saved."""

    def committed(self, number: int) -> bool:
        """Whether entry ``number`` is committed."""

    async def durable(self, number: int) -> None:
        """Return once entry ``number`` is committed (at once if it is)."""

    def mark_finished(self, status: str = "ok") -> None:
        """Record the run's final status."""

    async def aclose(self) -> None:
        """Write everything still queued and close the file."""
