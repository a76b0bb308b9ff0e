"""What a run reports as it goes: one stream of typed events.

The attempt lifecycle emits them; tracers, the progress display, ``on_progress``
and :meth:`Hush.stream <hush.core.engine.Hush.stream>` subscribe to them. A run
with no subscriber builds no event at all.

Kinds, in the order a run produces them:

``run_start``   the run began (``path`` is the graph's name, ``input`` its inputs)
``node_start``  a node, or a map item (``path`` with its index, ``g/batch[3]``), began
``token``       an LLM node streamed a piece of its reply (``text``)
``llm``         an LLM call ended (``llm`` holds model, usage, latency, time to first token)
``progress``    an iteration node's counters changed (``counters``)
``node_end``    the node or item ended (``status``, ``duration``, ``output`` or ``error``)
``run_end``     the run ended; ``result`` is what ``run()`` returns
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from hush.core.errors import NodeError
    from hush.core.state import IterationCounters

logger = logging.getLogger("hush.events")
_now = time.time

EventKind = Literal["run_start", "node_start", "token", "llm", "progress", "node_end", "run_end"]

SpanType = Literal["run", "graph", "map", "item", "node", "llm"]
"""What a ``node_start``/``node_end`` pair stands for: the run, a nested graph, an
iteration node, one item of it, a plain node, an LLM node."""


@dataclass(slots=True)
class LLMCall:
    """One LLM request as it went: what was asked, what came back, and when."""

    model: str
    """The model asked for (the resource's)."""
    messages: Any
    params: Mapping[str, Any]
    started: float
    """Wall-clock seconds (``time.time()``) when the call was made."""
    ended: float
    first_token: float | None = None
    """When the first streamed token arrived (streamed calls only)."""
    response_model: str | None = None
    output: Any = None
    usage: Mapping[str, int] | None = None
    """``prompt_tokens``, ``completion_tokens``, ``total_tokens``."""
    finish_reason: str | None = None
    resource: str | None = None
    attempts: int = 1
    error: str | None = None
    cost: float | None = None
    """USD (``None``: the resource has no price)."""
    cached: bool = False
    """Answered from the response cache: nothing was sent."""
    batch_id: str | None = None
    """Sent through the provider's Batch API: the id of the batch that answered it."""
    operation: Literal["chat", "embeddings", "rerank"] = "chat"
    """What was asked: a chat completion, embeddings (``messages`` holds the texts) or a
    rerank (``messages`` holds the query and documents)."""

    @property
    def latency(self) -> float:
        """Seconds from the call to its reply (retries and limiter waits included)."""
        return self.ended - self.started

    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the call to its first streamed token."""
        return None if self.first_token is None else self.first_token - self.started


@dataclass(slots=True)
class Event:
    """One thing that happened in a run. Fields a kind does not use stay ``None``.

    The engine builds the frequent kinds with :func:`node_start`, :func:`node_end` and
    :func:`progress`, which pass the fields by position: keep their order."""

    kind: EventKind
    path: str
    """Node path, with item indices (``g/batch[3]/llm``); the graph's name for run events."""
    run_id: str
    time: float = field(default_factory=time.time)
    """Wall-clock seconds (``time.time()``)."""
    parent: str | None = None
    """Path of the enclosing node or item (the run's path for top-level nodes)."""
    type: SpanType | None = None
    name: str | None = None
    input: Any = None
    output: Any = None
    status: str | None = None
    """``ok``, ``error``, ``timeout`` or ``cancelled`` (``node_end``, ``run_end``)."""
    error: NodeError | None = None
    duration: float | None = None
    attempts: int | None = None
    text: str | None = None
    llm: LLMCall | None = None
    counters: IterationCounters | None = None
    node: str | None = None
    """The node's path without item indices (``g/batch/llm``): the same for every item."""
    result: dict[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    """``run_start``: ``user_id``, ``session_id``, ``tags`` and the run's metadata."""

    def __repr__(self) -> str:
        extra = f" {self.status}" if self.status else ""
        if self.text is not None:
            extra += f" {self.text!r}"
        return f"Event({self.kind} {self.path}{extra})"


def node_start(
    path: str,
    run_id: str,
    parent: str | None,
    type: SpanType,
    name: str,
    input: Any,
    node: str,
    time: float | None = None,
) -> Event:
    """A ``node_start`` event, built positionally (half the cost of the keyword call)."""
    return Event(
        "node_start",
        path,
        run_id,
        _now() if time is None else time,
        parent,
        type,
        name,
        input,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        node,
    )


def node_end(
    path: str,
    run_id: str,
    parent: str | None,
    type: SpanType,
    name: str,
    output: Any,
    error: NodeError | None,
    duration: float,
    node: str,
    cancelled: bool = False,
    attempts: int | None = None,
    time: float | None = None,
) -> Event:
    """A ``node_end`` event, built positionally; its status follows from ``error`` and
    ``cancelled``."""
    return Event(
        "node_end",
        path,
        run_id,
        _now() if time is None else time,
        parent,
        type,
        name,
        None,
        output,
        status_of(error, cancelled=cancelled),
        error,
        duration,
        attempts,
        None,
        None,
        None,
        node,
    )


def progress(
    path: str, run_id: str, type: SpanType, name: str, counters: IterationCounters, node: str
) -> Event:
    """A ``progress`` event, built positionally."""
    return Event(
        "progress",
        path,
        run_id,
        _now(),
        None,
        type,
        name,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        counters,
        node,
    )


Subscriber = Callable[[Event], object]
"""Receives every event of a run, on the event loop; it must be quick and must not raise.

A subscriber may say what it reads, so that the engine builds nothing else: ``kinds``
(a set of :data:`EventKind`; absent: every kind) and ``wants_item(path) -> bool``
(absent: every map item), asked once when a map item starts. The events inside an item
no subscriber wants are not built at all (see :meth:`Emitter.item`)."""

KINDS: frozenset[EventKind] = frozenset(
    ("run_start", "node_start", "token", "llm", "progress", "node_end", "run_end")
)


class Emitter:
    """Hands each event to the subscribers that read its kind; a failing subscriber is logged
    once and then ignored, so it can never break the run.

    ``backpressure`` (set for a streamed run) is awaited before each node starts: it
    returns when the consumer has room for more events.
    """

    __slots__ = (
        "_chooser",
        "_choosers",
        "_every_item",
        "_failed",
        "_quiet",
        "_routes",
        "backpressure",
    )

    def __init__(
        self,
        subscribers: Sequence[Subscriber],
        backpressure: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        routes: dict[str, list[tuple[int, Subscriber]]] = {kind: [] for kind in KINDS}
        for i, subscriber in enumerate(subscribers):
            for kind in getattr(subscriber, "kinds", None) or KINDS:
                routes[kind].append((i, subscriber))
        self._routes = {kind: tuple(found) for kind, found in routes.items()}
        readers = [s for _, s in self._routes["node_start"]]
        choosers = [getattr(s, "wants_item", None) for s in readers]
        self._every_item = any(chooser is None for chooser in choosers)
        self._choosers: tuple[Callable[[str], bool], ...] = tuple(c for c in choosers if c)
        self._chooser = self._choosers[0] if len(self._choosers) == 1 else self._any_wants
        self._failed: set[int] = set()
        self.backpressure = backpressure
        self._quiet: Emitter | None = None
        if self._routes["progress"]:
            self._quiet = Emitter(())
            self._quiet._routes = {**self._quiet._routes, "progress": self._routes["progress"]}
            self._quiet._failed = self._failed
            self._quiet._quiet = self._quiet

    def __call__(self, event: Event) -> None:
        for i, subscriber in self._routes[event.kind]:
            try:
                subscriber(event)
            except Exception:
                if i not in self._failed:
                    self._failed.add(i)
                    logger.warning("an event subscriber failed on %r", event, exc_info=True)

    def reads(self, kind: EventKind) -> bool:
        """Whether a subscriber reads events of ``kind`` (if not, build none)."""
        return bool(self._routes[kind])

    def item(self, path: str) -> Emitter | None:
        """The emitter for what happens inside the map item at ``path``, decided once when it
        starts: this one if a subscriber wants the item's events, else one that carries only
        ``progress`` events (``None`` if nobody reads them): the item runs untraced."""
        if self._every_item or self._chooser(path):
            return self
        return self._quiet

    def _any_wants(self, path: str) -> bool:
        return any(wants(path) for wants in self._choosers)


def status_of(error: NodeError | None, *, cancelled: bool = False) -> str:
    """The status a node or run ended with."""
    if cancelled:
        return "cancelled"
    if error is None:
        return "ok"
    return "timeout" if error.type == "NodeTimeoutError" else "error"
