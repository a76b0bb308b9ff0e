"""Results saved in chunks: one row per commit, read back entry by entry, with the files
written before chunks still read."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from pathlib import Path

import pytest

from hush.checkpoint import chunks as chunks_module
from hush.checkpoint import open_checkpoint
from hush.checkpoint.reader import list_runs, load_entries
from hush.checkpoint.sqlite_store import SPEND_KEY, SPEND_PATH


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def test_a_commit_of_many_results_is_one_row(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        for i in range(300):
            store.save(f"root/m[{i}]", f"d{i}", {"i": i})
        await store.flush()
        assert store.stats.commits == 1
    assert rows(db, "SELECT count(*), sum(entries) FROM chunks") == [(1, 300)]
    assert rows(db, "SELECT count(*) FROM entries WHERE path NOT LIKE '$%'") == [(0,)]
    async with await open_checkpoint(db, "r", "fp") as store:
        assert [store.load(f"root/m[{i}]", f"d{i}") for i in (0, 299)] == [{"i": 0}, {"i": 299}]
        assert store.load("root/m[0]", "d1") is None
    assert list_runs(db)[0].entries == 300


async def test_a_large_commit_is_split_into_bounded_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunks_module, "CHUNK_ENTRIES", 3)
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        for i in range(10):
            store.save(f"root/m[{i}]", "d", i)
        await store.flush()
        assert store.stats.commits == 1, "the chunks of one commit are one transaction"
    assert rows(db, "SELECT entries FROM chunks ORDER BY rowid") == [(3,), (3,), (3,), (1,)]
    assert load_entries(db, "r") == {f"root/m[{i}]": i for i in range(10)}


async def test_a_commit_of_large_results_is_cut_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunks_module, "CHUNK_BYTES", 2_500)
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        for i in range(5):
            store.save(f"root/m[{i}]", "d", "x" * 1_000)
        store.save("root/big", "d", "y" * 10_000)
        await store.flush()
        assert store.stats.commits == 1
    assert rows(db, "SELECT entries FROM chunks ORDER BY rowid") == [(2,), (2,), (1,), (1,)]
    assert len(load_entries(db, "r")) == 6


async def test_a_later_save_wins_and_every_spend_counts(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    usage = {"llm": {"calls": 1, "total_tokens": 12, "cost": 0.5}}
    async with await open_checkpoint(db, "r", "fp") as store:
        await store.save("root/m[a]", "d", "first", usage=usage)
        await store.save("root/m[a]", "d", "second", usage=usage)
    assert rows(db, "SELECT count(*) FROM chunks") == [(2,)]
    async with await open_checkpoint(db, "r", "fp") as store:
        assert store.load("root/m[a]", "d") == "second"
        spent = store.load(SPEND_PATH, SPEND_KEY)
    assert spent["llm"]["calls"] == 2 and spent["llm"]["total_tokens"] == 24
    assert spent["llm"]["cost"] == pytest.approx(1.0)
    assert load_entries(db, "r") == {"root/m[a]": "second"}


async def test_bookkeeping_is_rewritten_in_place(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        await store.save("$batch", "llm", {"b1": ["x"]})
        await store.save("$batch", "llm", {"b1": ["x"], "b2": ["y"]})
        await store.save("root/a", "d", 1)
    assert rows(db, "SELECT path FROM entries") == [("$batch",)]
    assert rows(db, "SELECT sum(entries) FROM chunks") == [(1,)]
    async with await open_checkpoint(db, "r", "fp") as store:
        assert store.load("$batch", "llm") == {"b1": ["x"], "b2": ["y"]}
        assert store.load("root/a", "d") == 1


async def test_a_chunk_that_does_not_load_runs_its_results_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        await store.save("root/a", "d", 1)
        await store.save("root/b", "d", 2)
    with sqlite3.connect(db) as conn:
        first = conn.execute("SELECT min(rowid) FROM chunks").fetchone()[0]
        conn.execute("UPDATE chunks SET body = ? WHERE rowid = ?", (b"garbage", first))
    with caplog.at_level(logging.WARNING, logger="hush.checkpoint"):
        async with await open_checkpoint(db, "r", "fp") as store:
            assert store.load("root/a", "d") is None
            assert store.load("root/b", "d") == 2
    assert "does not load; they run again" in caplog.text


def schema_3_file(db: Path) -> None:
    """A checkpoint file as hush wrote it before chunks (schema 3): one row per result in
    ``entries``, no ``chunks`` table."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                created_at REAL NOT NULL, updated_at REAL NOT NULL, status TEXT NOT NULL);
            CREATE TABLE entries (run_id TEXT NOT NULL, path TEXT NOT NULL,
                digest TEXT NOT NULL, value BLOB NOT NULL, finished_at REAL NOT NULL,
                spend TEXT, PRIMARY KEY (run_id, path, digest)) WITHOUT ROWID;
            INSERT INTO runs VALUES ('r', 'fp', 1.0, 1.0, 'running');
            PRAGMA user_version = 3;
            """
        )
        conn.execute(
            "INSERT INTO entries VALUES ('r', 'root/m[x.0]', 'd', ?, 1.0, ?)",
            (pickle.dumps({"y": 1}, protocol=5), '{"llm":{"calls":1}}'),
        )
    conn.close()


async def test_a_file_written_before_chunks_is_resumed(tmp_path: Path) -> None:
    """Schema version 3 kept one row per result in ``entries``: those are still read, the
    file gains the chunks table, and new results go there."""
    db = tmp_path / "old.db"
    schema_3_file(db)
    async with await open_checkpoint(db, "r", "fp") as store:
        assert store.load("root/m[x.0]", "d") == {"y": 1}
        assert store.load(SPEND_PATH, SPEND_KEY)["llm"]["calls"] == 1
        await store.save("root/m[z.0]", "d", {"y": 2})
    assert rows(db, "PRAGMA user_version") == [(4,)]
    assert load_entries(db, "r") == {"root/m[x.0]": {"y": 1}, "root/m[z.0]": {"y": 2}}
    assert list_runs(db)[0].entries == 2


def test_a_file_written_before_chunks_is_read_without_being_opened_for_writing(
    tmp_path: Path,
) -> None:
    """The readers (``list_runs``, ``load_entries``, what ``hush runs`` and ``hush batch``
    show) open a file read-only, so a schema 3 file has no chunks table for them."""
    db = tmp_path / "old.db"
    schema_3_file(db)
    assert load_entries(db, "r") == {"root/m[x.0]": {"y": 1}}
    assert [(run.run_id, run.entries) for run in list_runs(db)] == [("r", 1)]
    assert rows(db, "PRAGMA user_version") == [(3,)]
    assert rows(db, "SELECT name FROM sqlite_master WHERE name = 'chunks'") == []


async def test_restarting_a_run_deletes_its_chunks_only(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    for run_id in ("r", "other"):
        async with await open_checkpoint(db, run_id, "fp") as store:
            await store.save("root/a", "d", run_id)
    async with await open_checkpoint(db, "r", "changed", on_mismatch="restart") as store:
        assert store.load("root/a", "d") is None
    assert load_entries(db, "other") == {"root/a": "other"}
    assert rows(db, "SELECT run_id FROM chunks") == [("other",)]
