"""``hush batch``: every row of a spreadsheet through one prompt, answers written back.

``run_batch`` (async) and ``run_batch_sync`` do from Python what the command does.
"""

from __future__ import annotations

from typing import Any

from hush.batch.errors import BatchUsageError, TableError, TemplateError
from hush.batch.runner import BatchResult, checkpoint_for, run_batch
from hush.batch.tables import read_table, write_table

__all__ = [
    "BatchResult",
    "BatchUsageError",
    "TableError",
    "TemplateError",
    "checkpoint_for",
    "read_table",
    "run_batch",
    "run_batch_sync",
    "write_table",
]


def run_batch_sync(*args: Any, **kwargs: Any) -> BatchResult:
    """Blocking :func:`run_batch` for scripts and notebooks without an event loop."""
    import anyio

    async def main() -> BatchResult:
        return await run_batch(*args, **kwargs)

    return anyio.run(main)
