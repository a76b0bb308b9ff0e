"""Run extensions: what plugs into a run from outside the core (LLM spend, budget, cache).

The core knows nothing of LLMs. A package that wants a say in every run registers a
factory (:func:`register`, a callable or a lazily imported ``"module:attribute"``); for
each run the engine asks every factory for its :class:`RunExtension` objects, given the
run's :class:`~hush.core.options.RunOptions`. The engine then

1. calls every extension's ``check(graph)`` (no side effects; a wrong option raises
   :class:`~hush.core.errors.RunOptionError`), before anything is opened;
2. enters every ``open(scope)`` in the run's one exit stack, before ``run_start``
   (those with ``reads_checkpoint`` after the checkpoint store is open, the others
   before it, so a failure to open leaves no run row);
3. calls ``finish(record)`` when the run's nodes are done, to fill what it owns in
   the record (cost, tokens, ``llm``), and exits ``open`` with the rest of the stack.

An extension that measures what work consumes (:class:`Meter`) has it saved with the
work's checkpoint row: a map worker (or a loop) runs its items in :func:`work_usage`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.context import RunContext
    from hush.core.nodes.graph.graph_node import GraphNode
    from hush.core.options import RunOptions
    from hush.core.state import RunRecord


@dataclass(slots=True)
class RunScope:
    """What an extension is given when the run opens: the root graph, the run's record,
    and its checkpoint store (``None`` without a checkpoint, or when the extension is
    opened before the store)."""

    graph: GraphNode
    record: RunRecord
    store: CheckpointStore | None = None


class RunExtension(Protocol):
    """One concern plugged into every run (see the module docstring)."""

    name: str
    reads_checkpoint: bool
    """Opened after the checkpoint store (and given it), rather than before."""

    def check(self, graph: GraphNode) -> None:
        """Validate the options for this graph; raise ``RunOptionError``; open nothing."""

    def open(self, scope: RunScope) -> contextlib.AbstractAsyncContextManager[None]:
        """What the extension holds while the run lasts (entered before ``run_start``)."""

    def finish(self, record: RunRecord) -> None:
        """Fill what the extension owns in the record, once the run's nodes are done."""


class Usage(Protocol):
    """What one piece of work consumed, while it runs and once it is done."""

    taken: bool
    """Set when the work's usage was saved with it; what is not taken goes to the run."""

    def summary(self) -> Mapping[str, Any] | None:
        """What the work consumed (``None``: nothing)."""

    def next(self) -> None:
        """The piece of work ended (its ``summary`` read, ``taken`` set): what it did not
        take goes to the run, and what follows is counted from nothing, as the next piece."""


class Meter(Protocol):
    """An extension that counts what each piece of work consumes."""

    def work(self) -> contextlib.AbstractContextManager[Usage]:
        """Count what the work run inside consumes (in this task and those it starts): the
        pieces run one after another, each ended by :meth:`Usage.next` (a map worker enters
        it once for all the items it runs)."""

    def flush(self) -> None:
        """Hand what no saved work holds to the checkpoint now (before a node's save)."""


ExtensionFactory = Callable[["RunOptions"], Sequence[RunExtension]]
"""Gives the extensions of one run from its options (none when it has nothing to do)."""

_factories: list[ExtensionFactory | str] = []


def register(factory: ExtensionFactory | str) -> None:
    """Ask ``factory`` for extensions for every run; a ``"module:attribute"`` string is
    imported at the first run (so registering loads nothing)."""
    if factory not in _factories:
        _factories.append(factory)


def unregister(factory: ExtensionFactory | str) -> None:
    """Stop asking ``factory`` (as given to :func:`register`) for extensions."""
    for i, known in enumerate(_factories):
        if known is factory or (isinstance(factory, str) and _named(known) == factory):
            del _factories[i]
            return


def _named(factory: ExtensionFactory | str) -> str:
    if isinstance(factory, str):
        return factory
    return f"{factory.__module__}:{getattr(factory, '__qualname__', '')}"


def extensions_for(options: RunOptions) -> tuple[RunExtension, ...]:
    """The extensions every registered factory gives for a run with ``options``."""
    found: list[RunExtension] = []
    for factory in _factories:
        if isinstance(factory, str):
            factory = _resolve(factory)
        found.extend(factory(options))
    return tuple(found)


def _resolve(name: str) -> ExtensionFactory:
    """Import the factory ``"module:attribute"`` and keep it in its place in the registry."""
    module, _, attribute = name.partition(":")
    factory: ExtensionFactory = getattr(importlib.import_module(module), attribute)
    _factories[_factories.index(name)] = factory
    return factory


running_meters: contextvars.ContextVar[tuple[Meter, ...]] = contextvars.ContextVar(
    "hush_run_meters", default=()
)
"""The meters of the running run (set by the run while it lasts; read by :func:`flush_usage`)."""


def meters_of(extensions: Sequence[RunExtension]) -> tuple[Meter, ...]:
    """The extensions that count what work consumes (those with a ``work`` method: an
    attribute check, since ``isinstance`` against a protocol costs tens of microseconds)."""
    meters = [cast("Meter", e) for e in extensions if hasattr(e, "work")]
    return tuple(meters)


def work_usage(run: RunContext) -> contextlib.AbstractContextManager[Usage | None]:
    """Count what the pieces of work (map items) of ``run`` run inside, one after another,
    consume, each to be saved with its checkpoint row: yields a :class:`Usage` whose
    ``summary()`` goes in the row, whose ``taken`` the caller sets when the row was written,
    and whose ``next()`` ends each piece (``None``: nothing to count, as without a
    checkpoint)."""
    meters = run.meters
    if run.checkpoint is None or not meters:
        return contextlib.nullcontext()
    if len(meters) == 1:
        return _pieces(meters[0])
    return _joined(meters)


@contextlib.contextmanager
def _pieces(meter: Meter) -> Iterator[Usage]:
    """``meter.work()``; a meter whose usage has no ``next`` (written before pieces) is
    entered anew for each piece instead."""
    stack = contextlib.ExitStack()
    usage = stack.enter_context(meter.work())
    if hasattr(usage, "next"):
        with stack:
            yield usage
        return
    again = _Reentered(meter, usage, stack)
    try:
        yield again
    finally:
        again.close()


class _Reentered:
    """The usage of a meter without ``next``: each piece is one ``work()`` of the meter."""

    __slots__ = ("_meter", "_stack", "_usage")

    def __init__(self, meter: Meter, usage: Usage, stack: contextlib.ExitStack) -> None:
        self._meter, self._usage, self._stack = meter, usage, stack

    @property
    def taken(self) -> bool:
        return self._usage.taken

    @taken.setter
    def taken(self, value: bool) -> None:
        self._usage.taken = value

    def summary(self) -> Mapping[str, Any] | None:
        return self._usage.summary()

    def next(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._usage = self._stack.enter_context(self._meter.work())

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def _joined(meters: tuple[Meter, ...]) -> Iterator[Usage]:
    with contextlib.ExitStack() as stack:
        usage = _JoinedUsage([stack.enter_context(_pieces(m)) for m in meters])
        try:
            yield usage
        finally:
            for part in usage.parts:
                part.taken = usage.taken


class _JoinedUsage:
    """The usage of several meters as one (their summaries merged)."""

    __slots__ = ("parts", "taken")

    def __init__(self, parts: list[Usage]) -> None:
        self.parts = parts
        self.taken = False

    def summary(self) -> Mapping[str, Any] | None:
        merged: dict[str, Any] = {}
        for part in self.parts:
            merged.update(part.summary() or {})
        return merged or None

    def next(self) -> None:
        for part in self.parts:
            part.taken = self.taken
            part.next()
        self.taken = False


def flush_usage() -> None:
    """Hand what the running run's work consumed, not saved with any work, to its checkpoint
    now: called before a node's result is saved, so usage is saved no later than results."""
    for meter in running_meters.get():
        meter.flush()
