"""What every node of one run shares."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hush.core.checkpointing import RunCheckpoint
    from hush.core.events import Emitter
    from hush.core.executor import ItemExecutor
    from hush.core.extensions import Meter
    from hush.core.state import RunRecord


class RunContext:
    """One run's record, checkpoint, event emitter, run-wide slot (``max_running_nodes``)
    and the extensions that count what its work consumes."""

    __slots__ = (
        "_views",
        "checkpoint",
        "emit",
        "executor",
        "meters",
        "plain",
        "record",
        "run_id",
        "slot",
        "t0",
    )

    def __init__(
        self,
        run_id: str,
        record: RunRecord,
        *,
        emit: Emitter | None = None,
        slot: asyncio.Semaphore | None = None,
        checkpoint: RunCheckpoint | None = None,
        executor: ItemExecutor | None = None,
        meters: tuple[Meter, ...] = (),
    ) -> None:
        self.run_id = run_id
        self.executor = executor
        """Where top-level map items run by default (``engine.run(executor=...)``)."""
        self.record = record
        self.emit = emit
        """Hands events to the run's subscribers; ``None`` when nothing subscribes."""
        self.slot = slot
        self.checkpoint = checkpoint
        self.meters = meters
        """Count what each map item consumes (see :func:`hush.core.extensions.work_usage`)."""
        self.plain = slot is None and checkpoint is None
        """Nothing to save or limit: plain nodes may take the scheduler's fast path."""
        self.t0 = record.clock = time.perf_counter()
        self._views: dict[Emitter | None, RunContext] = {}

    def with_emit(self, emit: Emitter | None) -> RunContext:
        """The same run seen through another emitter (a map item no subscriber wants), made
        once per emitter."""
        view = self._views.get(emit)
        if view is None:
            view = self._views[emit] = copy.copy(self)
            view.emit = emit
        return view

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0
