"""What a tracer knows of a run while it traces it: its open spans, which map items a
sampled trace keeps, and what it asks the engine for (:class:`Subscription`)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hush.core.events import Event, EventKind


@dataclass(slots=True)
class OpenSpan:
    """A span whose start arrived and whose end did not yet."""

    id: int
    parent: OpenSpan | None
    start: Event
    item: OpenSpan | None = None
    """The innermost map item around it, whose end decides whether it is exported (sampling)."""
    held: list[Callable[[], None]] | None = None
    """A sampled item's exports waiting for its end."""
    errored: bool = False
    """A sampled item that holds a failure (always exported)."""
    export: Any = None
    """What the tracer made of the span when it started (an OpenTelemetry span)."""

    @property
    def name(self) -> str:
        return self.start.name or self.start.path

    @property
    def holder(self) -> OpenSpan | None:
        """The item whose end decides on what ends inside this span: itself or its ``item``."""
        return self if self.held is not None else self.item


@dataclass(slots=True)
class RunSpans:
    """One run being traced."""

    start: Event
    trace_id: int
    fields: dict[str, Any]
    """``user_id``, ``session_id``, ``tags`` and ``metadata`` of the run."""
    open: dict[str, OpenSpan] = field(default_factory=dict)
    common: dict[str, Any] = field(default_factory=dict)
    """What a tracer shares between the spans of the run."""
    dropped: int = 0
    """Events of the run the full queue dropped (known at its end; its trace is incomplete)."""

    @property
    def run_id(self) -> str:
        return self.start.run_id

    @property
    def name(self) -> str:
        return self.start.name or self.start.path


def hold(item: OpenSpan | None, exports: list[Callable[[], None]], failed: bool) -> None:
    """Keep ``exports`` until ``item`` ends; a failure among them means it is exported."""
    assert item is not None and item.held is not None
    item.held.extend(exports)
    item.errored = item.errored or failed


def decided_later(span: OpenSpan, parent: OpenSpan | None, run_id: str, share: float) -> bool:
    """Sampling: whether the end of an item decides on ``span`` (its start is then held until
    that end): the innermost item around it, or its own end for an item not drawn yet (an
    item drawn already, outside any other, is kept whatever its end)."""
    item = span.item = parent.holder if parent is not None else None
    if span.start.type != "item":
        return item is not None
    if item is None and sampled(run_id, span.start.path, share):
        return False
    span.held = []
    return True


def sampled(run_id: str, path: str, share: float) -> bool:
    """Whether the item at ``path`` of run ``run_id`` is among the ``share`` traced: a hash of
    both, so the same run id keeps the same items."""
    if share >= 1.0:
        return True
    return zlib.crc32(f"{run_id}\x00{path}".encode()) < share * 2**32


TRACED_KINDS: frozenset[EventKind] = frozenset(
    ("run_start", "node_start", "node_end", "llm", "run_end")
)
"""The events a tracer reads (no ``token`` nor ``progress``: the engine builds none for it)."""


class Subscription:
    """What a tracer hands the engine for one run: the queue its events go to, the kinds it
    reads and, with ``share`` below 1, the map items it wants (asked once as each starts)."""

    __slots__ = ("_bound", "_seed", "kinds", "put", "run_id", "share", "wants_item")

    def __init__(self, put: Callable[[Event], None], run_id: str, share: float) -> None:
        self.put, self.run_id, self.share = put, run_id, share
        self.kinds = TRACED_KINDS
        if share < 1.0:
            self._seed = zlib.crc32(f"{run_id}\x00".encode())
            self._bound = share * 2**32
            self.wants_item = self._sampled

    def __call__(self, event: Event) -> None:
        self.put(event)

    def _sampled(self, path: str) -> bool:
        """:func:`sampled` with the run id's part of the hash taken once (a CRC continues
        from the CRC of what precedes: the same draw)."""
        return zlib.crc32(path.encode(), self._seed) < self._bound
