"""``MapNode``: run the body once per item, concurrently, under a cap."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hush.core.checkpointing import SaveWindow
from hush.core.errors import GraphDefinitionError, NodeError, NodeInputError
from hush.core.executor import ItemExecutor
from hush.core.extensions import work_usage
from hush.core.items import in_order
from hush.core.nodes.iteration.base import IterationNode
from hush.core.policies import RetryPolicy
from hush.core.refs import Each

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.extensions import Usage

DEFAULT_MAX_CONCURRENCY = 32
_END = object()


class MapNode(IterationNode):
    """Runs its inner graph once per item, at most ``max_concurrency`` at a time.

    Inputs wrapped in ``Each(...)`` are iterated (several zip; unequal lengths
    are an error), the others are given to every item. Items are pulled lazily,
    so an iterator or generator input is never loaded whole. What the body
    writes to ``PARENT`` becomes lists in input order, with ``error`` holding
    each item's error or ``None``. A failed item never fails the map. With
    ``executor`` (a :class:`~hush.distributed.RayExecutor`) the items run there; a
    map outside any map item uses the run's ``executor=`` when it sets none.

    With a checkpoint, a worker takes its next item while earlier items' commits are
    under way, as long as at most twice ``max_concurrency`` finished items of the map
    are uncommitted (:class:`~hush.core.checkpointing.SaveWindow`), so a kill loses at
    most three times ``max_concurrency`` items: those running and those being committed.
    """

    kind = "map"

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
        executor: ItemExecutor | None = None,
    ) -> None:
        if executor is not None and not isinstance(executor, ItemExecutor):
            raise GraphDefinitionError(
                f"{type(self).__name__} '{name}': executor must be an item executor such as "
                f"RayExecutor(...), got {type(executor).__name__}"
            )
        self.executor = executor
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise GraphDefinitionError(
                f"{type(self).__name__} '{name}': max_concurrency must be a positive int, "
                f"got {max_concurrency!r}"
            )
        self.max_concurrency = max_concurrency
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)
        self.each_keys = tuple(k for k, v in self.inputs.items() if isinstance(v, Each))

    def check(self) -> list[str]:
        """A map needs at least one ``Each`` input."""
        if not self.each_keys:
            return ["has no Each(...) input to iterate over"]
        return []

    def describe_options(self) -> dict[str, Any]:
        """The cap is part of what the node does."""
        return {"max_concurrency": self.max_concurrency}

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Run every item; return the body's outputs as lists, plus ``error``.

        Items are pulled from the inputs as workers free up, so the iteration
        itself is the truth about how many there are (a ``len()`` only sizes
        the progress bar).
        """
        assert self.plan is not None
        plan = self.plan
        items, total = self._items(inputs, call.attempt)
        broadcast = {k: v for k, v in inputs.items() if k not in self.each_keys}
        counters = call.counters(total)
        emit = call.run.emit
        report = call.progress if emit is not None and emit.reads("progress") else None
        columns = Columns(plan.writes_parent | call.demanded)
        in_memory = all(isinstance(inputs[k], Sequence) for k in self.each_keys)
        pulled = in_order(call, enumerate(items), broadcast, in_memory=in_memory)
        executor = self.executor
        if executor is None and "[" not in call.path:
            executor = call.run.executor

        cap = self.max_concurrency
        window = SaveWindow(call.run.checkpoint, call.path, cap)
        started = 1  # workers: the first, then one more with each item taken, up to the cap
        tg: asyncio.TaskGroup | None = None

        outside = contextvars.copy_context()  # workers start here, not in a sibling's meter

        async def worker(item: tuple[int, dict[str, Any]] | None) -> None:
            with work_usage(call.run) as usage:
                await work(item, usage)

        async def work(item: tuple[int, dict[str, Any]] | None, usage: Usage | None) -> None:
            nonlocal started
            while item is not None:
                i, values = item
                if tg is not None and started < cap:
                    more = _take(pulled)
                    if more is not None:
                        started += 1
                        tg.create_task(worker(more), context=outside.copy())
                columns.grow(i)
                counters.running += 1
                try:
                    outcome = await call.run_item(
                        plan, i, broadcast, values, wait_saved=False, executor=executor, usage=usage
                    )
                finally:
                    counters.running -= 1
                columns.fill(i, outcome.written, outcome.error)
                if outcome.error is not None:
                    counters.failed += 1
                if outcome.resumed:
                    counters.resumed += 1
                counters.done += 1
                if report is not None:
                    report(counters)
                waiting = window.finished(outcome.saving)
                if waiting is not None:
                    await waiting
                item = _take(pulled)

        first = _take(pulled)
        if cap <= 1 or total == 1 or first is None:
            await worker(first)
        else:
            try:
                async with asyncio.TaskGroup() as tg:
                    await worker(first)
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
        await window.drained()
        counters.total = columns.size
        if report is not None:
            report(counters)
        return columns.lists()

    def _items(
        self, inputs: Mapping[str, Any], attempt: int = 1
    ) -> tuple[Iterator[dict[str, Any]], int | None]:
        sources: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for key in self.each_keys:
            value = inputs[key]
            if attempt > 1 and iter(value) is value:
                raise NodeInputError(
                    f"{type(self).__name__} '{self.name}' cannot retry over Each input '{key}': it is "
                    "a one-shot iterator already consumed by the failed attempt; pass a list"
                )
            if isinstance(value, str | bytes | Mapping) or value is None:
                raise NodeInputError(
                    f"Each input '{key}' of {type(self).__name__} '{self.name}' must be a list or "
                    f"another iterable of items, got {type(value).__name__}"
                )
            try:
                iter(value)
            except TypeError:
                raise NodeInputError(
                    f"Each input '{key}' of {type(self).__name__} '{self.name}' is not iterable "
                    f"({type(value).__name__})"
                ) from None
            sources[key] = value
            if hasattr(value, "__len__"):
                lengths[key] = len(value)
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"'{k}' has {n}" for k, n in lengths.items())
            raise NodeInputError(
                f"Each inputs of {type(self).__name__} '{self.name}' have unequal lengths: {sizes}"
            )
        total = next(iter(lengths.values())) if len(lengths) == len(sources) else None
        keys = list(sources)
        if len(keys) == 1:
            key = keys[0]
            return ({key: v} for v in sources[key]), total
        return self._zip(keys, [iter(v) for v in sources.values()]), total

    def _zip(self, keys: list[str], iterators: list[Iterator[Any]]) -> Iterator[dict[str, Any]]:
        """Zip the Each inputs, with a clear error when one runs out before the others."""
        count = 0
        while True:
            values = [next(it, _END) for it in iterators]
            ended = [k for k, v in zip(keys, values, strict=True) if v is _END]
            if len(ended) == len(keys):
                return
            if ended:
                going = [k for k in keys if k not in ended]
                raise NodeInputError(
                    f"Each inputs of {type(self).__name__} '{self.name}' have unequal lengths: "
                    f"{', '.join(repr(k) for k in ended)} ran out after {count} items, "
                    f"{', '.join(repr(k) for k in going)} had more"
                )
            count += 1
            yield dict(zip(keys, values, strict=True))


def _take(items: Iterator[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]] | None:
    """The next item, or ``None`` at the end; a ``CancelledError`` raised by the iterable
    itself is an error of the map (a worker task raising it would look cancelled and be
    dropped silently)."""
    try:
        return next(items)
    except StopIteration:
        return None
    except asyncio.CancelledError as exc:
        raise NodeInputError(
            f"the Each input raised CancelledError while iterated: {exc!r}"
        ) from exc


class Columns:
    """The body's outputs as one list per key, filled in item order as items finish.

    No per-item dict is kept. A key first written by a later item (a body that
    writes ``outputs={"*": PARENT}``) gets ``None`` for the items before it.
    """

    __slots__ = ("columns", "errors", "size")

    def __init__(self, keys: frozenset[str]) -> None:
        self.size = 0
        self.columns: dict[str, list[Any]] = {key: [] for key in keys if key != "error"}
        self.errors: list[NodeError | None] = []

    def grow(self, index: int) -> None:
        """Make room for item ``index`` (items may be taken out of order by the workers)."""
        while self.size <= index:
            self.size += 1
            for column in self.columns.values():
                column.append(None)
            self.errors.append(None)

    def fill(self, index: int, written: Mapping[str, Any], error: NodeError | None) -> None:
        """Item ``index`` finished with ``written`` (and its error, if it failed)."""
        for key, value in written.items():
            if key == "error":
                continue
            column = self.columns.get(key)
            if column is None:
                column = self.columns[key] = [None] * self.size
            column[index] = value
        self.errors[index] = error if error is not None else written.get("error")

    def lists(self) -> dict[str, Any]:
        """Every key's list, and ``error`` aligned with the items."""
        return {**self.columns, "error": self.errors}
