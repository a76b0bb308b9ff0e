"""What every node of one run shares."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hush.core.checkpointing import RunCheckpoint
    from hush.core.events import Emitter
    from hush.core.executor import ItemExecutor
    from hush.core.state import RunRecord


class RunContext:
    """One run's record, checkpoint, event emitter and run-wide slot (``max_concurrency``)."""

    __slots__ = ("checkpoint", "emit", "executor", "plain", "record", "run_id", "slot", "t0")

    def __init__(
        self,
        run_id: str,
        record: RunRecord,
        *,
        emit: Emitter | None = None,
        slot: asyncio.Semaphore | None = None,
        checkpoint: RunCheckpoint | None = None,
        executor: ItemExecutor | None = None,
    ) -> None:
        self.run_id = run_id
        self.executor = executor
        """Where top-level map items run by default (``engine.run(executor=...)``)."""
        self.record = record
        self.emit = emit
        """Hands events to the run's subscribers; ``None`` when nothing subscribes."""
        self.slot = slot
        self.checkpoint = checkpoint
        self.plain = slot is None and checkpoint is None
        """Nothing to save or limit: plain nodes may take the scheduler's fast path."""
        self.t0 = record.clock = time.perf_counter()

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0
