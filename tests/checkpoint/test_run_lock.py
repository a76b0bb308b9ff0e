"""One process per run: a second process on a run_id is refused; a dead holder's run is taken."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hush.checkpoint import RunLockedError, open_checkpoint
from hush.checkpoint.lock import lock_path

CHILD = Path(__file__).with_name("lock_child.py")
ROOT = Path(__file__).resolve().parents[2]


def start(db: Path, run_id: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db), run_id, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def finish(db: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), str(db), run_id, "finish"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process running run 'r' of tmp_path/run.db, stopped in its first item."""
    proc = start(tmp_path / "run.db", "r", "hold")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("running "), (line, proc.stderr.read() if proc.stderr else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_a_second_process_on_a_run_is_refused_naming_the_holder(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    db = tmp_path / "run.db"
    second = finish(db, "r")
    assert second.returncode == 3, second.stderr
    assert second.stdout.startswith("refused ")
    assert f"process {holder.pid}" in second.stdout
    assert "'r'" in second.stdout and str(db) in second.stdout
    assert holder.poll() is None, "the holder was disturbed"

    other = finish(db, "other")
    assert other.returncode == 0, other.stderr
    assert other.stdout.startswith("done ok [2, 4, 6]"), "another run of the same file is free"


def test_a_run_left_by_a_killed_process_is_taken_over(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    db = tmp_path / "run.db"
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    assert lock_path(db, "r").exists(), "a killed holder leaves its lock file"

    taken = finish(db, "r")
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith("done ok [2, 4, 6]")
    assert f"left locked by process {holder.pid}" in taken.stderr
    assert not lock_path(db, "r").exists(), "the lock file is removed when the run ends"


async def test_two_runs_of_one_run_id_in_one_process_are_refused_too(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    first = await open_checkpoint(db, "r", "f")
    try:
        with pytest.raises(RunLockedError, match="this process"):
            await open_checkpoint(db, "r", "f", restart=True)
        assert len(first) == 0
    finally:
        await first.aclose()
    again = await open_checkpoint(db, "r", "f")
    await again.aclose()
