"""The hush command line, run as a user would (subprocesses, real files)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HUSH = [sys.executable, "-m", "hush.cli"]


def hush(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HUSH, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


@pytest.mark.parametrize(
    ("target", "inputs", "key"),
    [
        ("examples/spreadsheet_batch.py:graph", "spreadsheet.json", "written"),
        ("examples/learning_path.py:graph", "learning_path.json", "learning_path"),
        ("examples/chapter_sections.py:graph", "chapters.json", "document"),
        ("examples/parallel_text_analysis.py:graph", "text.json", "summary"),
    ],
)
def test_hush_run_each_example(workdir: Path, target: str, inputs: str, key: str) -> None:
    out = hush(
        "run",
        target,
        "--inputs",
        f"examples/inputs/{inputs}",
        "--output",
        "out.json",
        "--no-progress",
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((workdir / "out.json").read_text())
    assert key in result
    assert ": ok in " in out.stderr


def test_hush_run_with_checkpoint_resumes(workdir: Path) -> None:
    args = [
        "run",
        "examples/spreadsheet_batch.py:graph",
        "--inputs",
        "examples/inputs/spreadsheet.json",
    ]
    args += [
        "--checkpoint",
        "run.db",
        "--run-id",
        "sheet-1",
        "--no-progress",
        "--output",
        "out.json",
    ]
    first = hush(*args, cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = hush(*args, cwd=workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed: 3 node(s)" in second.stderr
    assert json.loads((workdir / "out.json").read_text())["written"] == 60


def test_hush_run_exits_non_zero_with_a_summary_when_the_run_had_errors(workdir: Path) -> None:
    (workdir / "flaky.py").write_text(
        "from hush.core import GraphNode, CodeNode, START, END, PARENT\n"
        "def boom(x):\n    raise ValueError(f'bad {x}')\n"
        "with GraphNode(name='flaky') as graph:\n"
        "    n = CodeNode(name='n', code_fn=boom, inputs={'x': PARENT['x']})\n"
        "    START >> n >> END\n"
    )
    (workdir / "in.json").write_text('{"x": 3}')
    out = hush("run", "flaky.py:graph", "--inputs", "in.json", cwd=workdir)
    assert out.returncode == 1
    assert "1 error(s)" in out.stderr
    assert "flaky/n: ValueError: bad 3" in out.stderr


def test_hush_graph_prints_mermaid_and_bad_targets_are_clear(workdir: Path) -> None:
    out = hush("graph", "examples/learning_path.py:graph", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("flowchart TD")
    assert "per_question" in out.stdout
    missing = hush("graph", "examples/learning_path.py:nope", cwd=workdir)
    assert missing.returncode != 0
    assert "has no attribute 'nope'" in missing.stderr


def test_hush_trace_renders_a_local_trace(workdir: Path) -> None:
    args = [
        "run",
        "examples/parallel_text_analysis.py:graph",
        "--inputs",
        "examples/inputs/text.json",
    ]
    out = hush(*args, "--trace", "t.jsonl", "--no-progress", cwd=workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    tree = hush("trace", "t.jsonl", cwd=workdir)
    assert tree.returncode == 0
    assert "text-analysis" in tree.stdout and "generation" in tree.stdout


def test_checkpoint_without_run_id_is_refused(workdir: Path) -> None:
    out = hush("run", "examples/spreadsheet_batch.py:graph", "--checkpoint", "run.db", cwd=workdir)
    assert out.returncode != 0
    assert "--checkpoint needs --run-id" in out.stderr
