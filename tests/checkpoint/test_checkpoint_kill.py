"""A process killed with SIGKILL loses nothing that ``await save()`` confirmed."""

from __future__ import annotations

import asyncio
import os
import runpy
import signal
import sys
from pathlib import Path

import pytest

from hush.checkpoint import list_runs, open_checkpoint

CHILD = Path(__file__).with_name("kill_child.py")
expected_value = runpy.run_path(str(CHILD))["value"]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


async def _run_and_kill(db: Path, run_id: str, kill_after: int) -> int:
    """Start the child, SIGKILL it once ``kill_after`` saves are confirmed; return the count."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(db), run_id, stdout=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    confirmed = 0
    try:
        async with asyncio.timeout(120):
            while confirmed < kill_after:
                line = await proc.stdout.readline()
                assert line.endswith(b"\n"), f"child exited early with {await proc.wait()}"
                confirmed = int(line)
            proc.send_signal(signal.SIGKILL)
            rest = await proc.stdout.read()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith(b"\n"):
            confirmed = max(confirmed, int(line))
    return confirmed


async def test_every_confirmed_save_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    confirmed = await _run_and_kill(db, "killed", kill_after=3000)

    async with await open_checkpoint(db, "killed", "kill-test") as store:
        missing = [i for i in range(confirmed) if not store.has(f"root/batch[{i}]")]
        assert missing == []
        assert all(
            store.load(f"root/batch[{i}]", "d") == expected_value(i) for i in range(confirmed)
        )
        assert len(store) >= confirmed
    (run,) = list_runs(db)
    assert run.run_id == "killed"


async def test_resume_after_sigkill_twice(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    first = await _run_and_kill(db, "again", kill_after=500)
    second = await _run_and_kill(db, "again", kill_after=first + 500)
    async with await open_checkpoint(db, "again", "kill-test") as store:
        assert all(store.has(f"root/batch[{i}]") for i in range(max(first, second)))
