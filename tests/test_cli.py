"""The hush command line, run as a user would (subprocesses, real files)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hush_process import run_hush, start_hush

ROOT = Path(__file__).resolve().parent.parent
HUSH = [sys.executable, "-m", "hush.cli"]


def hush(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_hush(args, cwd=cwd)


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


def short_failure(out: subprocess.CompletedProcess[str]) -> list[str]:
    """A user error: exit 2, one or two lines on stderr, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, out.stderr
    return lines


def test_version_and_help_have_no_artefacts(tmp_path: Path) -> None:
    from hush import __version__

    for out in (
        subprocess.run([*HUSH, "--version"], capture_output=True, text=True, cwd=tmp_path),
        hush("--version", cwd=tmp_path),
    ):
        assert out.returncode == 0 and out.stdout.strip() == f"hush, version {__version__}"
    for command in ([], ["run"], ["batch"], ["graph"], ["mock-llm"], ["demo"], ["trace"]):
        page = hush(*command, "--help", cwd=tmp_path)
        assert page.returncode == 0, page.stderr
        for artefact in ("<bool>", "{target}", "[required]]", "TEXT TEXT"):
            assert artefact not in page.stdout, (command, page.stdout)
    assert "checkpoint.db" in hush("batch", "--help", cwd=tmp_path).stdout


@pytest.mark.parametrize(
    ("inputs", "content", "needle"),
    [
        ("absent.json", None, "absent.json"),
        ("bad.json", "{not json", "bad.json"),
        ("list.json", "[1, 2]", "list.json"),
    ],
)
def test_bad_inputs_file_is_a_short_error(
    workdir: Path, inputs: str, content: str | None, needle: str
) -> None:
    if content is not None:
        (workdir / inputs).write_text(content)
    out = hush("run", "examples/spreadsheet_batch.py:graph", "--inputs", inputs, cwd=workdir)
    assert needle in short_failure(out)[0]


def test_missing_inputs_say_which_and_how(workdir: Path) -> None:
    lines = short_failure(hush("run", "examples/spreadsheet_batch.py:graph", cwd=workdir))
    assert "lack 'input', 'output'" in lines[0]
    assert "--inputs" in lines[1]


def test_unloadable_target_is_a_short_error(workdir: Path) -> None:
    short_failure(hush("run", "nowhere.py:graph", cwd=workdir))
    short_failure(hush("run", "examples/learning_path.py", cwd=workdir))
    (workdir / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    assert "boom at import" in "\n".join(short_failure(hush("graph", "broken.py:g", cwd=workdir)))


def counting_graph_file(workdir: Path, factor: int) -> None:
    (workdir / "count.py").write_text(
        "from hush import END, PARENT, START, CodeNode, Each, GraphNode, MapNode\n"
        "with GraphNode(name='count') as graph:\n"
        "    with MapNode(name='items', inputs={'x': Each(PARENT['xs'])}) as items:\n"
        f"        n = CodeNode(name='n', code_fn=lambda x: {{'y': x * {factor}}},\n"
        "                     inputs={'x': PARENT['x']}, outputs={'y': PARENT})\n"
        "        START >> n >> END\n"
        "    items['y'] >> PARENT['ys']\n"
        "    START >> items >> END\n"
    )
    (workdir / "in.json").write_text('{"xs": [1, 2, 3]}')


def test_checkpoint_mismatch_points_to_restart_and_restart_starts_over(workdir: Path) -> None:
    counting_graph_file(workdir, 2)
    args = ["run", "count.py:graph", "-i", "in.json", "--checkpoint", "c.db", "--run-id", "r"]
    first = hush(*args, cwd=workdir)
    assert first.returncode == 0, first.stderr
    again = hush(*args, cwd=workdir)
    assert "resumed: 1 node(s)" in again.stderr
    counting_graph_file(workdir, 3)
    lines = short_failure(hush(*args, cwd=workdir))
    assert "run 'r' in c.db was saved by a different graph" in lines[0]
    assert "--restart" in lines[1]
    restarted = hush(*args, "--restart", cwd=workdir)
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["ys"] == [3, 6, 9]
    assert "resumed" not in restarted.stderr
    forced = hush(*args, "--restart", cwd=workdir)
    assert "resumed" not in forced.stderr, "--restart on an unchanged graph must start over"


def test_ctrl_c_on_a_checkpointed_run_says_what_was_saved_and_how_to_resume(
    workdir: Path,
) -> None:
    (workdir / "slow.py").write_text(
        "import asyncio\n"
        "from hush import END, PARENT, START, CodeNode, Each, GraphNode, MapNode\n"
        "async def work(x):\n"
        "    if x >= 3:\n        await asyncio.sleep(60)\n"
        "    print('done', x, flush=True)\n"
        "    return {'y': x}\n"
        "with GraphNode(name='slow') as graph:\n"
        "    with MapNode(name='items', inputs={'x': Each(PARENT['xs'])}, max_concurrency=4)"
        " as items:\n"
        "        n = CodeNode(name='n', code_fn=work, inputs={'x': PARENT['x']},\n"
        "                     outputs={'y': PARENT})\n"
        "        START >> n >> END\n"
        "    items['y'] >> PARENT['ys']\n"
        "    START >> items >> END\n"
    )
    (workdir / "in.json").write_text('{"xs": [0, 1, 2, 3, 4]}')
    args = ["run", "slow.py:graph", "-i", "in.json", "--checkpoint", "c.db", "--run-id", "s"]
    with start_hush([*args, "--no-progress"], cwd=workdir) as child:
        deadline = time.monotonic() + 60
        while child.stdout().count("done") < 3 and time.monotonic() < deadline:
            assert child.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.01)
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 130, child.stderr()
        stderr = child.stderr()
    assert "Traceback" not in stderr
    assert "interrupted: 3 finished result(s) of run 's' are saved in c.db" in stderr
    resume = stderr.strip().splitlines()[-1]
    assert resume.startswith("resume with: hush run slow.py:graph")
    assert "--run-id s" in resume and "--checkpoint c.db" in resume


def test_mock_llm_port_in_use_is_a_short_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        lines = short_failure(hush("mock-llm", "--port", port, cwd=tmp_path))
    assert f"port {port} is in use" in lines[0] and "--port" in lines[1]


def test_hush_run_cache_and_token_budget(workdir: Path) -> None:
    args = [
        "run",
        "examples/spreadsheet_batch.py:graph",
        "--inputs",
        "examples/inputs/spreadsheet.json",
        "--output",
        "out.json",
        "--no-progress",
    ]
    first = hush(*args, "--cache", "answers.sqlite", cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "LLM: " in first.stderr and "cost unknown (no price)" in first.stderr
    answers = json.loads((workdir / "out.json").read_text())
    second = hush(*args, "--cache", "answers.sqlite", cwd=workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "LLM: 0 call(s) (" in second.stderr and " cached), 0 tokens" in second.stderr
    assert json.loads((workdir / "out.json").read_text()) == answers

    starved = hush(*args, "--max-total-tokens", "1", cwd=workdir)
    assert starved.returncode == 1
    assert "BudgetExceededError: token budget of 1 reached" in starved.stderr
    assert "with --checkpoint FILE --run-id ID (or --cache FILE), a rerun" in starved.stderr
    assert "Traceback" not in starved.stderr


def test_max_cost_without_prices_and_a_bad_cache_are_short_usage_errors(workdir: Path) -> None:
    args = ["run", "examples/spreadsheet_batch.py:graph", "--inputs"]
    args += ["examples/inputs/spreadsheet.json", "--no-progress"]
    unpriced = hush(*args, "--max-cost", "1", cwd=workdir)
    assert unpriced.returncode == 2
    assert "max_cost needs a price" in unpriced.stderr and "Traceback" not in unpriced.stderr
    (workdir / "not-a-cache.sqlite").write_text("hello, I am text")
    info = hush("cache", "info", "not-a-cache.sqlite", cwd=workdir)
    assert info.returncode == 2 and "is not a response cache" in info.stderr
    assert "Traceback" not in info.stderr
