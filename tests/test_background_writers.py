"""The writers built on BackgroundWriter: the checkpoint's WAL copy, what a process that exits
without closing keeps, and a response cache whose writer falls behind. Real SQLite files."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hush.checkpoint.reader import load_entries
from hush.checkpoint.schema import connect
from hush.checkpoint.wal import WalCheckpointer
from hush.providers import cache as cache_module
from hush.providers.cache import ResponseCache

ANSWER = {"content": "yes", "finish_reason": "stop"}


def run_python(script: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True, timeout=120)


def test_a_burst_of_commits_makes_one_wal_checkpoint_that_copies_the_log(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    conn = connect(db)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x BLOB)")
    before = db.stat().st_size
    wal = WalCheckpointer(db)
    for _ in range(50):
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 4096,))
        wal.committed()
    assert db.stat().st_size == before, "nothing copied yet: the checkpoint waits a second"
    assert wal.flush(30)
    # The commits of one second share a checkpoint (two if these 50 took over a second).
    assert 1 <= wal.checkpoints <= 2
    assert db.stat().st_size > before + 50 * 4096
    wal.stop()
    conn.close()


def test_a_process_that_exits_without_closing_its_checkpoint_keeps_what_it_saved(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    run_python(
        f"""
        import asyncio
        from hush.checkpoint import open_checkpoint

        async def main():
            global store
            store = await open_checkpoint({str(db)!r}, "r", "fp")
            for i in range(500):
                store.save(f"root/item[{{i}}]", "d", i)
            await asyncio.sleep(0)

        asyncio.run(main())
        """
    )
    assert len(load_entries(db, "r")) == 500


def test_a_process_that_exits_without_closing_its_cache_keeps_the_answers(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    run_python(
        f"""
        from hush.providers.cache import ResponseCache

        cache = ResponseCache({str(path)!r})
        for i in range(300):
            cache.put(f"key{{i}}", "m", {{"content": str(i), "finish_reason": "stop"}})
        """
    )
    reopened = ResponseCache(path)
    assert len(reopened) == 300
    assert reopened.get("key299") == {"content": "299", "finish_reason": "stop"}
    reopened.close()


async def test_a_cache_whose_writer_falls_behind_drops_answers_never_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cache_module, "MAX_QUEUED", 5)
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the cache's commits wait for this write lock
    with caplog.at_level(logging.WARNING, logger="hush.providers.cache"):
        for i in range(50):
            cache.put(f"key{i}", "m", ANSWER)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert await cache.aflush(30)
    stored = [i for i in range(50) if cache.get(f"key{i}") is not None]
    # At most one batch taken by the blocked writer and one full queue behind it.
    assert 5 <= len(stored) <= 11, stored
    warnings = [r.getMessage() for r in caplog.records if r.name == "hush.providers.cache"]
    assert len(warnings) == 1
    assert "fell behind" in warnings[0] and str(path) in warnings[0]
    cache.put("later", "m", ANSWER)
    await asyncio.to_thread(cache.close)
    reopened = ResponseCache(path)
    assert reopened.get("later") == ANSWER
    reopened.close()
