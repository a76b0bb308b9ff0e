"""``hush trace FILE``: a tree for a trace file, one line and exit 2 for anything else."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hush.core.events import Event
from hush.observability import MemoryTracer
from hush.observability.local import read_trace


def hush_trace(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hush.cli", "trace", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("name,age\nada,36\n", "2 line(s), none a trace record"),
        ('{"a": 1}\n[1, 2]\n', "2 line(s), none a trace record"),
    ],
)
def test_a_file_without_trace_records_is_one_line_and_exit_2(
    tmp_path: Path, content: str, found: str
) -> None:
    path = tmp_path / "not-a-trace.jsonl"
    path.write_text(content)
    done = hush_trace(path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"hush trace: {path} has no trace records ({found}); "
        "write one with --trace FILE or LocalTracer"
    ]


def test_a_trace_with_a_damaged_line_prints_the_tree_and_one_warning(tmp_path: Path) -> None:
    record = {"type": "span", "id": "01", "parent_id": None, "name": "graph", "kind": "run"}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(record) + "\n{not json\n" + '{"a": 1}\n')
    done = hush_trace(path)
    assert done.returncode == 0, done.stderr
    assert "graph" in done.stdout
    assert done.stderr.splitlines() == [
        f"WARNING {path}: 2 line(s) are not trace records and were skipped (first: line 2)"
    ]
    assert [r["name"] for r in read_trace(path)] == ["graph"]


def test_records_of_a_tracer_are_trace_records(tmp_path: Path) -> None:
    tracer = MemoryTracer()
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    sink(Event("run_start", "g", "r", name="g"))
    sink(Event("run_end", "g", "r", status="ok"))
    asyncio.run(tracer.flush(10))
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tracer.records))
    assert read_trace(path) == tracer.records
