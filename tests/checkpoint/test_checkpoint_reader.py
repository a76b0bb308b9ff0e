"""Read-only inspection of checkpoint files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hush.checkpoint import (
    CheckpointError,
    UnknownRunError,
    list_runs,
    load_entries,
    open_checkpoint,
)


async def test_list_runs_and_load_entries(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "first", "fp-1") as store:
        await store.save("root/a", "d", {"x": 1})
        await store.save("root/b", "d", {"x": 2})
        store.mark_finished("ok")
    async with await open_checkpoint(db, "second", "fp-2") as store:
        await store.save("root/c", "d", 3)
        runs = {run.run_id: run for run in list_runs(db)}
        assert load_entries(db, "second") == {"root/c": 3}
    assert set(runs) == {"first", "second"}
    assert (runs["first"].status, runs["first"].entries, runs["first"].fingerprint) == (
        "ok",
        2,
        "fp-1",
    )
    assert (runs["second"].status, runs["second"].entries) == ("running", 1)
    assert runs["first"].created_at <= runs["first"].updated_at
    assert list(load_entries(db, "first")) == ["root/a", "root/b"]
    assert load_entries(str(db), "first")["root/b"] == {"x": 2}


async def test_reading_does_not_write(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        store.save("root/a", "d", 1)
    before = db.stat().st_mtime_ns
    assert load_entries(db, "r") == {"root/a": 1}
    assert db.stat().st_mtime_ns == before


async def test_errors_are_clear(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    with pytest.raises(FileNotFoundError, match=r"run\.db"):
        list_runs(db)
    async with await open_checkpoint(db, "r", "fp"):
        pass
    with pytest.raises(UnknownRunError, match="'other'"):
        load_entries(db, "other")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(CheckpointError, match=r"garbage\.db"):
        list_runs(garbage)
