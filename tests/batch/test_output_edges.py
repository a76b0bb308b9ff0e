"""``hush batch`` output files: matched by content, checked before sending, umask modes,
written off the event loop, one outcome for every temporary file (issue 19, items 3-6)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from hush.batch import TableError, run_batch, write_table
from hush.providers import get_registry
from hush.testing import MockLLMServer
from tests.batch.conftest import asked, hush, read_rows, write_rows

ARGS = ("batch", "in.csv", "-o", "out.csv", "--prompt", "say {text}")


def answer_for(text: str) -> str:
    return f"[gpt-4o-mini] reply to: say {text}"


def test_rerun_after_rows_changed_gives_each_row_its_own_answer(
    workdir: Path, server: MockLLMServer
) -> None:
    first = [{"id": str(i), "text": word} for i, word in enumerate(["alpha", "beta", "gamma"])]
    write_rows(workdir / "in.csv", first)
    assert hush(workdir, *ARGS).returncode == 0

    changed = [
        {"id": "new-1", "text": "delta"},
        {"id": "2", "text": "gamma"},
        {"id": "0", "text": "alpha"},
        {"id": "new-2", "text": "epsilon"},
    ]
    write_rows(workdir / "in.csv", changed)
    server.reset()
    again = hush(workdir, *ARGS)
    assert again.returncode == 0, again.stderr
    _, rows = read_rows(workdir / "out.csv")
    assert [(r["id"], r["answer"]) for r in rows] == [
        (r["id"], answer_for(r["text"])) for r in changed
    ]
    # Items are keyed by their content: only the new rows are sent, wherever they are.
    assert asked(server) == {"say delta": 1, "say epsilon": 1}


def test_rows_appended_and_edited_at_the_end_ask_only_themselves(
    workdir: Path, server: MockLLMServer
) -> None:
    rows = [{"text": f"row {i}"} for i in range(6)]
    write_rows(workdir / "in.csv", rows)
    assert hush(workdir, *ARGS).returncode == 0
    rows[5] = {"text": "row five, edited"}
    rows.append({"text": "row 6"})
    write_rows(workdir / "in.csv", rows)
    server.reset()
    again = hush(workdir, *ARGS)
    assert again.returncode == 0, again.stderr
    assert asked(server) == {"say row five, edited": 1, "say row 6": 1}
    _, written = read_rows(workdir / "out.csv")
    assert [r["answer"] for r in written] == [answer_for(r["text"]) for r in rows]


def test_a_refused_rerun_leaves_the_previous_output_untouched(
    workdir: Path, server: MockLLMServer
) -> None:
    write_rows(workdir / "in.csv", [{"text": "alpha"}, {"text": "beta"}])
    assert hush(workdir, *ARGS).returncode == 0
    before = (workdir / "out.csv").read_bytes()
    write_rows(workdir / "in.csv", [{"text": "NEW-1"}, {"text": "beta"}])
    server.reset()
    refused = hush(workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "now say {text}")
    assert refused.returncode == 2, refused.stderr
    assert "--restart" in refused.stderr
    assert server.total_requests == 0
    assert (workdir / "out.csv").read_bytes() == before


@pytest.mark.parametrize(
    ("output", "needle"),
    [("out.txt", "unknown file type '.txt'"), ("out.parquet", "need pyarrow")],
)
def test_output_type_and_writer_checked_before_any_request(
    workdir: Path, server: MockLLMServer, output: str, needle: str
) -> None:
    if output.endswith(".parquet"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("pyarrow is installed here: a .parquet output can be written")
    write_rows(workdir / "in.csv", [{"text": "alpha"}, {"text": "beta"}])
    out = hush(workdir, "batch", "in.csv", "-o", output, "--prompt", "{text}")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "again" not in out.stderr and ".tmp" not in out.stderr
    assert server.total_requests == 0
    assert sorted(p.name for p in workdir.iterdir()) == ["in.csv", "resources.yaml"]


def test_output_directory_that_is_a_file_is_refused_before_any_request(
    workdir: Path, server: MockLLMServer
) -> None:
    write_rows(workdir / "in.csv", [{"text": "alpha"}])
    (workdir / "taken").write_text("a file")
    out = hush(workdir, "batch", "in.csv", "-o", "taken/out.csv", "--prompt", "{text}")
    assert out.returncode == 2 and "not a directory" in out.stderr, out.stderr
    assert server.total_requests == 0


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".jsonl"])
def test_output_follows_the_umask(workdir: Path, ext: str) -> None:
    write_rows(workdir / "in.csv", [{"text": "alpha"}])
    out = hush(workdir, "batch", "in.csv", "-o", f"out{ext}", "--prompt", "{text}", umask=0o022)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE((workdir / f"out{ext}").stat().st_mode) == 0o644


def test_an_existing_output_keeps_its_mode(workdir: Path) -> None:
    write_rows(workdir / "in.csv", [{"text": "alpha"}])
    assert hush(workdir, *ARGS, umask=0o022).returncode == 0
    os.chmod(workdir / "out.csv", 0o640)
    write_rows(workdir / "in.csv", [{"text": "alpha"}, {"text": "beta"}])
    assert hush(workdir, *ARGS, umask=0o077).returncode == 0
    assert stat.S_IMODE((workdir / "out.csv").stat().st_mode) == 0o640
    assert len(read_rows(workdir / "out.csv")[1]) == 2


def test_a_failed_write_leaves_no_temporary_file_and_the_old_output(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_table(target, ["a"], [{"a": 1}])
    before = target.read_bytes()
    with pytest.raises(TableError, match=r"out\.jsonl: cannot write it"):
        write_table(target, ["a"], [{"a": float("nan")}, {"a": Unprintable()}])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text for this value")


async def test_the_table_is_written_in_another_thread(
    tmp_path: Path, server: MockLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    registry = get_registry()
    registry.register("batch-edges", {"base_url": server.base_url, "model": "gpt-4o-mini"})
    loop_thread = threading.get_ident()
    try:
        with caplog.at_level(logging.DEBUG, logger="hush.batch"):
            result = await run_batch(
                [{"q": f"question {i}"} for i in range(50)],
                tmp_path / "out.xlsx",
                prompt="{q}",
                model="batch-edges",
                progress=False,
            )
    finally:
        registry.unregister("batch-edges")
    assert result.ok
    writes = [r for r in caplog.records if r.getMessage().startswith("wrote ")]
    assert writes, "the output was never written"
    assert all(r.thread != loop_thread for r in writes)
    assert writes[-1].getMessage().endswith(": 50 rows")


async def test_the_loop_keeps_running_while_a_large_table_is_written(tmp_path: Path) -> None:
    """A loop-lag probe counts its wake-ups while a 5,000-row xlsx is written: the loop
    runs throughout (the stall itself is measured in benchmarks/bench_batch.py)."""
    from hush.batch.output import OutputWriter

    rows = [{"n": i, "text": f"row {i} " * 8} for i in range(5000)]
    done = asyncio.Event()
    wakeups = 0

    async def probe() -> None:
        nonlocal wakeups
        while not done.is_set():
            await asyncio.sleep(0)
            wakeups += 1

    writer = OutputWriter(tmp_path / "big.xlsx", ["n", "text"], lambda: lambda: rows)
    task = asyncio.ensure_future(probe())
    await asyncio.sleep(0)
    before = wakeups
    async with writer:
        pass
    done.set()
    await task
    assert writer.writes == 1
    assert wakeups - before > 10, "the loop did not run while the table was written"
