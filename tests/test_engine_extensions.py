"""Run extensions: checked before anything opens, opened before ``run_start``, finished and
closed once however the run ends; ``work_usage`` around a piece of work; and a core that
imports nothing from the packages above it."""

from __future__ import annotations

import ast
import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hush.checkpoint import open_checkpoint
from hush.checkpoint.reader import list_runs
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.checkpointing import RunCheckpoint
from hush.core.context import RunContext
from hush.core.errors import RunOptionError
from hush.core.events import Event
from hush.core.extensions import RunScope, register, unregister, work_usage
from hush.core.nodes.graph.graph_node import GraphNode as Graph
from hush.core.options import RunOptions
from hush.core.state import RunRecord
from hush.observability import MemoryTracer

CORE = Path(__file__).resolve().parents[1] / "hush" / "core"
UPPER = ("hush.providers", "hush.observability", "hush.distributed", "hush.batch", "hush.cli")


class StartCounter(MemoryTracer):
    def __init__(self) -> None:
        super().__init__()
        self.starts: list[Event] = []

    def subscribe(self, start: Event) -> Any:
        self.starts.append(start)
        return super().subscribe(start)


class Recording:
    """An extension that notes what the run does with it, failing where it is told to."""

    name = "recording"

    def __init__(
        self, log: list[str], *, reads_checkpoint: bool = False, fail_in: str = ""
    ) -> None:
        self.log = log
        self.reads_checkpoint = reads_checkpoint
        self.fail_in = fail_in
        self.scope: RunScope | None = None

    def check(self, graph: Graph) -> None:
        self.log.append(f"check {graph.name}")
        if self.fail_in == "check":
            raise RunOptionError("recording: refused")

    @contextlib.asynccontextmanager
    async def open(self, scope: RunScope) -> AsyncIterator[None]:
        self.scope = scope
        self.log.append(f"open store={scope.store is not None}")
        if self.fail_in == "open":
            raise RunOptionError("recording: cannot open")
        try:
            yield
        finally:
            self.log.append(f"close {scope.record.status}")

    def finish(self, record: RunRecord) -> None:
        self.log.append("finish")
        record.tokens += 1000


@pytest.fixture
def plugged() -> Iterator[list[Recording]]:
    """Extensions the test appends are given to every run while it lasts."""
    extensions: list[Recording] = []

    def factory(options: RunOptions) -> list[Recording]:
        return extensions

    register(factory)
    try:
        yield extensions
    finally:
        unregister(factory)


def one_node(body: Any = None) -> GraphNode:
    async def default() -> dict[str, int]:
        return {"x": 1}

    with GraphNode(name="g") as g:
        START >> CodeNode(name="a", code_fn=body or default, outputs={"x": PARENT}) >> END
    return g


async def test_an_extension_is_checked_opened_finished_and_closed_around_the_run(
    plugged: list[Recording], tmp_path: Path
) -> None:
    log: list[str] = []
    plugged += [Recording(log), Recording(log, reads_checkpoint=True)]
    tracer = StartCounter()
    result = await Hush(one_node()).run(checkpoint=tmp_path / "c.db", tracer=tracer)
    assert log == [
        "check g",
        "check g",
        "open store=False",
        "open store=True",
        "finish",
        "finish",
        "close ok",
        "close ok",
    ]
    assert result["$state"].tokens == 2000, "finish filled the record"
    assert len(tracer.starts) == 1


@pytest.mark.parametrize("fail_in", ["check", "open"])
async def test_an_extension_that_fails_to_check_or_open_leaves_no_run(
    plugged: list[Recording], tmp_path: Path, fail_in: str
) -> None:
    log: list[str] = []
    plugged += [Recording(log), Recording(log, fail_in=fail_in)]
    tracer, db = StartCounter(), tmp_path / "c.db"
    ran: list[int] = []

    async def body() -> dict[str, int]:
        ran.append(1)
        return {"x": 1}

    message = "refused" if fail_in == "check" else "cannot open"
    with pytest.raises(RunOptionError, match=f"recording: {message}"):
        await Hush(one_node(body)).run(checkpoint=db, run_id="r", tracer=tracer)
    assert tracer.starts == [] and ran == []
    assert not db.exists() or list_runs(db) == [], "the checkpoint was not opened"
    if fail_in == "check":
        assert log == ["check g", "check g"], "nothing opens before every check passed"
    else:
        assert log[2:] == ["open store=False", "open store=False", "close running"], (
            "what opened before the failure was closed"
        )


async def test_an_extension_that_reads_the_checkpoint_and_fails_leaves_no_running_row(
    plugged: list[Recording], tmp_path: Path
) -> None:
    plugged.append(Recording([], reads_checkpoint=True, fail_in="open"))
    tracer, db = StartCounter(), tmp_path / "c.db"
    with pytest.raises(RunOptionError, match="cannot open"):
        await Hush(one_node()).run(checkpoint=db, run_id="r", tracer=tracer)
    assert tracer.starts == []
    assert [r.status for r in list_runs(db)] == ["cancelled"]


async def test_a_cancelled_run_closes_its_extensions_once(plugged: list[Recording]) -> None:
    log: list[str] = []
    plugged.append(Recording(log))
    started = asyncio.Event()

    async def stuck() -> dict[str, int]:
        started.set()
        await asyncio.Event().wait()
        return {}

    task = asyncio.create_task(Hush(one_node(stuck)).run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["check g", "open store=False", "finish", "close cancelled"]


class Meter:
    """A meter whose work usage counts one unit per piece of work."""

    name = "units"
    reads_checkpoint = False

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.rest = 0
        self.flushed = 0

    def check(self, graph: Graph) -> None: ...

    def open(self, scope: RunScope) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def finish(self, record: RunRecord) -> None: ...

    @contextlib.contextmanager
    def work(self) -> Iterator[Units]:
        usage = Units(self.unit)
        yield usage
        if not usage.taken:
            self.rest += 1

    def flush(self) -> None:
        self.flushed += 1


class Units:
    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.taken = False

    def summary(self) -> Mapping[str, Any] | None:
        return {self.unit: 1}


async def test_work_usage_counts_work_only_where_it_can_be_saved(tmp_path: Path) -> None:
    store = await open_checkpoint(tmp_path / "w.db", "r", "f")
    try:
        tokens, calls = Meter("tokens"), Meter("calls")
        record = RunRecord(run_id="r", graph="g")
        plain = RunContext("r", record, meters=(tokens,))
        with work_usage(plain) as usage:
            assert usage is None, "without a checkpoint nothing is counted apart"
        saved = RunContext("r", record, checkpoint=RunCheckpoint(store), meters=(tokens, calls))
        with work_usage(saved) as usage:
            assert usage is not None
            assert usage.summary() == {"tokens": 1, "calls": 1}
            usage.taken = True
        assert tokens.rest == calls.rest == 0, "taken usage stays with its work"
        with work_usage(saved) as usage:
            assert usage is not None
        assert tokens.rest == calls.rest == 1, "usage no work took goes to the run"
        alone = RunContext("r", record, checkpoint=RunCheckpoint(store), meters=(tokens,))
        with work_usage(alone) as usage:
            assert usage is not None
            usage.taken = True
            usage.next()  # a meter without pieces of its own: each piece is one work()
            usage.next()
        assert tokens.rest == 3, "the pieces after the first, untaken, did not go to the run"
        pieced = PiecesMeter()
        with work_usage(
            RunContext("r", record, checkpoint=RunCheckpoint(store), meters=(pieced,))
        ) as usage:
            assert usage is pieced.usage, "a usage that ends pieces itself is given as it is"
            usage.next()
        assert pieced.entered == 1 and pieced.usage.pieces == 1
    finally:
        await store.aclose()


class PiecesMeter(Meter):
    """A meter whose usage ends pieces itself (``next``)."""

    def __init__(self) -> None:
        super().__init__("pieces")
        self.entered = 0
        self.usage = Pieces()

    @contextlib.contextmanager
    def work(self) -> Iterator[Units]:
        self.entered += 1
        yield self.usage


class Pieces(Units):
    def __init__(self) -> None:
        super().__init__("pieces")
        self.pieces = 0

    def next(self) -> None:
        self.pieces += 1
        self.taken = False


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_the_core_imports_nothing_from_the_packages_above_it() -> None:
    found = {
        (str(path.relative_to(CORE)), module)
        for path in CORE.rglob("*.py")
        for module in _imports(path)
        if module.startswith(UPPER)
    }
    assert found == set()
