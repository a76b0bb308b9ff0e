"""The SQLite checkpoint store: roundtrips, run identity, throughput and failures."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from hush.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointStore,
    CheckpointValueError,
    CheckpointWriteError,
    SQLiteCheckpointStore,
    open_checkpoint,
)
from hush.checkpoint.reader import load_entries


class Answer(BaseModel):
    text: str
    score: float


@dataclass
class Usage:
    prompt: int
    completion: int


async def test_roundtrip_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    values = {
        "root/prepare": {"rows": [1, 2, 3], "name": "x"},
        "root/batch[17]": {"answer": Answer(text="hi", score=0.5), "usage": Usage(3, 4)},
        "root/outer[2]/inner[5]": {"content": "é" * 1000, "none": None},
    }
    async with await open_checkpoint(db, "r1", "fp") as store:
        assert store.restored == 0
        assert store.load("root/prepare", "d") is None
        for path, value in values.items():
            store.save(path, "d", value)
        assert store.load("root/prepare", "d") is None, "lookups see only what the file held"

    async with await open_checkpoint(str(db), "r1", "fp") as store:
        assert store.restored == len(values) == len(store)
        for path, value in values.items():
            assert store.load(path, "d") == value
        assert store.load("root/other", "d") is None


async def test_store_satisfies_protocol(tmp_path: Path) -> None:
    store: CheckpointStore = await open_checkpoint(tmp_path / "run.db", "r", "fp")
    store.save("root/a", "d", 1)
    await store.aclose()
    store = await open_checkpoint(tmp_path / "run.db", "r", "fp")
    assert store.load("root/a", "d") == 1
    assert (store.has("root/a"), store.has_under("root/"), store.has_under("")) == (True,) * 3
    assert (store.has("root/b"), store.has_under("other/")) == (False, False)
    await store.aclose()


async def test_load_returns_a_fresh_copy_of_what_was_saved(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        value = {"items": [1]}
        store.save("root/a", "d", value)
        value["items"].append(2)
    async with await open_checkpoint(db, "r", "fp") as store:
        got = store.load("root/a", "d")
        assert got == {"items": [1]}
        got["items"].append(3)
        assert store.load("root/a", "d") == {"items": [1]}


async def test_latest_save_wins(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        for i in range(50):
            store.save("root/a", "d", i)
    async with await open_checkpoint(db, "r", "fp") as store:
        assert store.load("root/a", "d") == 49


async def test_runs_in_one_file_are_separate(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with (
        await open_checkpoint(db, "a", "fp-a") as a,
        await open_checkpoint(db, "b", "fp-b") as b,
    ):
        a.save("root/x", "d", "from a")
        b.save("root/x", "d", "from b")
    async with (
        await open_checkpoint(db, "a", "fp-a") as a,
        await open_checkpoint(db, "b", "fp-b") as b,
    ):
        assert (a.load("root/x", "d"), b.load("root/x", "d")) == ("from a", "from b")


async def test_mismatch_names_the_run_and_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "nightly", "fp-1") as store:
        store.save("root/a", "d", 1)
    with pytest.raises(CheckpointMismatchError) as info:
        await open_checkpoint(db, "nightly", "fp-2")
    message = str(info.value)
    assert "'nightly'" in message
    assert str(db) in message
    assert "restart=True (hush run --restart)" in message
    assert "new run_id" in message
    assert isinstance(info.value, ValueError)
    assert info.value.entries == 1
    async with await open_checkpoint(db, "nightly", "fp-1") as store:
        assert store.load("root/a", "d") == 1


async def test_restart_clears_the_old_entries(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp-1") as store:
        store.save("root/a", "d", 1)
    async with await open_checkpoint(db, "r", "fp-2", on_mismatch="restart") as store:
        assert len(store) == 0
        assert store.load("root/a", "d") is None
        store.save("root/b", "d", 2)
    async with await open_checkpoint(db, "r", "fp-2") as store:
        assert (store.load("root/a", "d"), store.load("root/b", "d")) == (None, 2)
    with pytest.raises(CheckpointMismatchError):
        await open_checkpoint(db, "r", "fp-1")


async def test_bad_arguments(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    with pytest.raises(ValueError, match="run_id"):
        await open_checkpoint(db, "", "fp")
    with pytest.raises(ValueError, match="fingerprint"):
        await open_checkpoint(db, "r", "")
    with pytest.raises(ValueError, match="on_mismatch"):
        await open_checkpoint(db, "r", "fp", on_mismatch="ignore")  # type: ignore[arg-type]


async def test_unopenable_files_name_the_file(tmp_path: Path) -> None:
    missing_dir = tmp_path / "nope" / "run.db"
    with pytest.raises(CheckpointError, match="nope"):
        await open_checkpoint(missing_dir, "r", "fp")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CheckpointError, match=r"garbage\.db"):
        await open_checkpoint(garbage, "r", "fp")


async def test_ten_thousand_saves_are_fast_and_grouped(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    started = time.perf_counter()
    store = await open_checkpoint(db, "big", "fp")
    for i in range(10_000):
        store.save(f"root/batch[{i}]", "d", {"i": i, "content": "x" * 200})
    await store.flush()
    elapsed = time.perf_counter() - started
    stats = store.stats
    await store.aclose()
    assert stats.entries == 10_000
    assert stats.commits <= 1_000, stats
    assert elapsed < 10, elapsed
    async with await open_checkpoint(db, "big", "fp") as store:
        assert len(store) == 10_000
        assert all(
            store.load(f"root/batch[{i}]", "d") == {"i": i, "content": "x" * 200}
            for i in range(10_000)
        )


@pytest.mark.parametrize("size", [1, 2, 5, 13, 127, 128, 129, 500, 511, 512, 513, 1_500])
async def test_every_batch_size_is_written_exactly(tmp_path: Path, size: int) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        for i in range(size):
            store.save(f"root/item[{i}]", "d", i)
        store.save("root/item[0]", "d", "last")
    expected = {f"root/item[{i}]": i for i in range(size)} | {"root/item[0]": "last"}
    assert load_entries(db, "r") == expected


async def test_busy_event_loop_does_not_starve_the_writer(tmp_path: Path) -> None:
    """Commits keep happening while the loop never idles (not only once it does)."""
    store = await open_checkpoint(tmp_path / "run.db", "r", "fp")

    async def busy_writer(w: int) -> None:
        for i in range(50):
            end = time.perf_counter() + 40e-6
            while time.perf_counter() < end:
                pass
            store.save(f"root/w[{w}]/item[{i}]", "d", i)
            await asyncio.sleep(0)

    await asyncio.gather(*(busy_writer(w) for w in range(100)))
    during = store.stats
    await store.aclose()
    assert during.commits >= 2, during
    assert during.entries > 0, during
    assert store.stats.entries == 5_000


async def test_concurrent_awaited_saves_share_commits(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:

        async def writer(w: int) -> None:
            for i in range(20):
                await store.save(f"root/w[{w}]/item[{i}]", "d", (w, i))

        await asyncio.gather(*(writer(w) for w in range(100)))
        assert store.stats.entries == 2_000
        assert store.stats.commits < 2_000
    async with await open_checkpoint(db, "r", "fp") as store:
        assert len(store) == 2_000
        assert store.load("root/w[99]/item[19]", "d") == (99, 19)


async def test_an_awaited_save_is_committed_when_it_returns(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        store.save("root/a", "d", "a")
        await store.save("root/b", "d", "b")
        assert load_entries(db, "r") == {"root/a": "a", "root/b": "b"}


async def test_mark_finished_records_the_status(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        store.save("root/a", "d", 1)
        store.mark_finished("error")
        with pytest.raises(ValueError, match="status"):
            store.mark_finished("")
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT status FROM runs WHERE run_id = 'r'").fetchone() == ("error",)
    async with await open_checkpoint(db, "r", "fp"):
        pass
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT status FROM runs WHERE run_id = 'r'").fetchone() == (
            "running",
        )


async def test_unpicklable_value_fails_at_save(tmp_path: Path) -> None:
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        with pytest.raises(CheckpointValueError, match="root/lock"):
            store.save("root/lock", "d", {"lock": threading.Lock()})
        store.save("root/ok", "d", 1)
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        assert store.load("root/lock", "d") is None
        assert store.load("root/ok", "d") == 1


async def test_unloadable_entry_is_treated_as_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        store.save("root/a", "d", 1)
    with sqlite3.connect(db) as other:
        body = pickle.dumps(["root/a", "d", b"garbage", None], protocol=5)
        other.execute("UPDATE chunks SET body = ? WHERE run_id = 'r'", (body,))
    async with await open_checkpoint(db, "r", "fp") as store:
        with caplog.at_level(logging.WARNING, logger="hush.checkpoint"):
            assert store.load("root/a", "d") is None
        assert "root/a" in caplog.text


async def test_writer_errors_surface(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "run.db"
    store = await open_checkpoint(db, "r", "fp")
    await store.save("root/a", "d", 1)
    with sqlite3.connect(db) as other:
        other.execute("DROP TABLE chunks")
    with (
        caplog.at_level(logging.ERROR, logger="hush.checkpoint"),
        pytest.raises(CheckpointWriteError, match="'r'") as info,
    ):
        async with asyncio.timeout(30):
            await store.save("root/b", "d", 2)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert any(r.name == "hush.checkpoint" and r.levelno == logging.ERROR for r in caplog.records)
    with pytest.raises(CheckpointWriteError):
        store.save("root/c", "d", 3)
    with pytest.raises(CheckpointWriteError):
        await store.flush()
    with pytest.raises(CheckpointWriteError):
        await store.aclose()
    await store.aclose()


async def test_writer_error_raised_by_aclose_after_unawaited_saves(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    store = await open_checkpoint(db, "r", "fp")
    await store.flush()
    with sqlite3.connect(db) as other:
        other.execute("DROP TABLE chunks")
    store.save("root/a", "d", 1)
    with pytest.raises(CheckpointWriteError, match="may not be saved"):
        async with asyncio.timeout(30):
            await store.aclose()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await open_checkpoint(tmp_path / "run.db", "r", "fp")
    await store.aclose()
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        store.save("root/a", "d", 1)
    with pytest.raises(RuntimeError, match="closed"):
        await store.save("root/a", "d", 1)
    assert store.load("root/a", "d") is None


async def test_forgotten_store_still_commits_when_collected(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    store: SQLiteCheckpointStore | None = await open_checkpoint(db, "r", "fp")
    assert store is not None
    for i in range(100):
        store.save(f"root/item[{i}]", "d", i)
    store = None
    gc.collect()
    async with await open_checkpoint(db, "r", "fp") as reopened:
        assert len(reopened) == 100


async def test_file_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp"):
        pass
    with sqlite3.connect(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_former_method_names_still_work_and_warn(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        with pytest.warns(DeprecationWarning, match=r"put\(\) is deprecated; use save\(\)"):
            store.put("root/a", "d", 1)
        with pytest.warns(DeprecationWarning, match=r"use await save\(\)"):
            await store.put_durable("root/b", "d", 2)
        with pytest.warns(DeprecationWarning, match=r"put_pending\(\) is deprecated; use save"):
            await store.put_pending("root/c", "d", 3, {"m": {"calls": 1}})
        with pytest.warns(DeprecationWarning, match=r"use save\(\.\.\., pickled=True\)"):
            await store.put_pickled("root/d", "d", pickle.dumps(4, protocol=5))
    async with await open_checkpoint(db, "r", "fp") as reopened:
        with pytest.warns(DeprecationWarning, match=r"get\(\) is deprecated; use load\(\)"):
            assert reopened.get("root/a", "d") == 1
        assert [reopened.load(f"root/{p}", "d") for p in "bcd"] == [2, 3, 4]
