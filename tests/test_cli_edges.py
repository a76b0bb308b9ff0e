"""The hush command tried as a new user would: wrong arguments, odd files, resumed runs.

Every user error is one line (or two, with a hint) on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hush_process import run_hush

HUSH = [sys.executable, "-m", "hush.cli"]


def hush(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_hush(args, cwd=cwd)


def user_error(out: subprocess.CompletedProcess[str], *, lines: int = 2) -> list[str]:
    """A user error: exit 2, at most ``lines`` lines on stderr, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    said = out.stderr.strip().splitlines()
    assert 1 <= len(said) <= lines, out.stderr
    return said


LLM_GRAPH = """\
from pathlib import Path

from hush import END, PARENT, START, CodeNode, Each, GraphNode, MapNode
from hush.providers import LLMNode, PromptNode, get_registry
from hush.testing import MockLLMServer

server = MockLLMServer().start_in_thread()
get_registry().register(
    "llm:m",
    {"base_url": server.base_url, "model": "m", "input_cost_per_mtok": 1000,
     "output_cost_per_mtok": 1000},
)


def gate(x):
    if x >= 3 and Path("fail").exists():
        raise ValueError(f"item {x} fails while the file 'fail' exists")
    return {"q": f"say {x}"}


with GraphNode(name="ask") as graph:
    with MapNode(name="items", inputs={"x": Each(PARENT["xs"])}) as items:
        g = CodeNode(name="gate", code_fn=gate, inputs={"x": PARENT["x"]})
        p = PromptNode(name="prompt", inputs={"prompt": "{q}", "q": g["q"]})
        llm = LLMNode(name="llm", resource_key="m", inputs={"messages": p["messages"]},
                      outputs={"content": PARENT["answer"]})
        START >> g >> p >> llm >> END
    items["answer"] >> PARENT["answers"]
    START >> items >> END
"""


def test_a_resumed_run_says_what_was_sent_now_and_the_run_total(tmp_path: Path) -> None:
    (tmp_path / "ask.py").write_text(LLM_GRAPH)
    (tmp_path / "in.json").write_text('{"xs": [0, 1, 2, 3, 4]}')
    (tmp_path / "fail").touch()
    args = ["run", "ask.py:graph", "-i", "in.json", "--checkpoint", "c.db", "--run-id", "r"]
    first = hush(*args, "--no-progress", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "LLM: 3 call(s)" in first.stderr and "sent now" not in first.stderr
    (tmp_path / "fail").unlink()
    second = hush(*args, "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["answers"] == [f"[m] reply to: say {x}" for x in range(5)]
    line = next(x for x in second.stderr.splitlines() if x.startswith("run r:"))
    match = re.search(
        r"LLM sent now: 2 call\(s\), ([\d,]+) tokens, ([\d.]+) USD; "
        r"run total: 5 call\(s\), ([\d,]+) tokens, ([\d.]+) USD",
        line,
    )
    assert match, line
    now_tokens, now_usd, total_tokens, total_usd = match.groups()
    assert 0 < int(now_tokens.replace(",", "")) < int(total_tokens.replace(",", ""))
    assert 0 < float(now_usd) < float(total_usd)
    third = hush(*args, "--no-progress", cwd=tmp_path)
    assert "LLM sent now: 0 call(s), 0 tokens, 0.0000 USD; run total: 5 call(s)" in third.stderr


HANDLED = """\
from hush import END, PARENT, START, CodeNode, GraphNode

def boom():
    raise ValueError("bad")

with GraphNode(name="handled") as graph:
    n = CodeNode(name="n", code_fn=boom)
    h = CodeNode(name="h", code_fn=lambda error: {"note": error.type},
                 inputs={"error": n["error"]}, outputs={"note": PARENT})
    START >> n >> h >> END
"""


def test_a_run_whose_errors_were_all_handled_prints_ok(tmp_path: Path) -> None:
    (tmp_path / "handled.py").write_text(HANDLED)
    out = hush("run", "handled.py:graph", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["note"] == "ValueError"
    summary = [x for x in out.stderr.splitlines() if x.startswith("run ")]
    assert len(summary) == 1, out.stderr
    assert ": ok (1 handled) in " in summary[0] and "error" not in summary[0]


def test_an_unhandled_error_next_to_a_handled_one_still_prints_error(tmp_path: Path) -> None:
    (tmp_path / "mixed.py").write_text(
        HANDLED.replace(
            "h >> END", "h >> END\n    m = CodeNode(name='m', code_fn=boom)\n    START >> m >> END"
        )
    )
    out = hush("run", "mixed.py:graph", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert ": error in " in out.stderr and "2 error(s) (1 handled)" in out.stderr
    assert "handled/m: ValueError: bad" in out.stderr


GRAPH = """\
from hush import END, PARENT, START, CodeNode, GraphNode, Hush

def make():
    with GraphNode(name="g") as g:
        n = CodeNode(name="n", code_fn=lambda: {"y": 1}, outputs={"y": PARENT})
        START >> n >> END
    return g
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder of the files a new user points hush at."""
    (tmp_path / "fn.py").write_text(GRAPH)
    (tmp_path / "two.py").write_text(GRAPH + "a = make()\nb = make()\n")
    (tmp_path / "one.py").write_text(GRAPH + "graph = make()\nengine = Hush(graph)\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "syntax.py").write_text("x = 1\ndef f(:\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "needs.py").write_text(
        "def build(model):\n    return None\n\nasync def main():\n    return None\n"
    )
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "two.py"], ["two.py defines 2 graphs: a, b", "name the one to run: two.py:a"]),
        (["run", "fn.py"], ["fn.py defines no root graph (functions: make)", "fn.py:make"]),
        (["run", "empty.py"], ["empty.py defines no root graph", "empty.py:NAME"]),
        (["run", "needs.py"], ["(functions: build, main)", "one: needs.py:NAME"]),
        (["graph", "fn.py:nope"], ["fn.py has no attribute 'nope'", "fn.py:make"]),
        (["run", "empty.py:x"], ["empty.py:x is an int, not a graph"]),
        (["run", "syntax.py"], ["syntax.py:2: SyntaxError: invalid syntax"]),
        (["run", "folder"], ["hush run: folder is a directory"]),
        (["run", "exits.py"], ["importing exits.py exited (status 3) at exits.py:2"]),
        (["graph", "folder:g"], ["hush graph: folder is a directory"]),
        (["run", "list.json"], ["list.json is not a Python file"]),
        (["run", "absent.py:g"], ["no such file: absent.py"]),
        (["run", "one.py", "-i", "list.json"], ["the inputs file list.json holds a JSON list"]),
        (["run", "one.py", "-i", "folder"], ["cannot read the inputs file folder"]),
        (["run", "one.py", "-o", "folder"], ["--output folder is a directory"]),
        (["run", "exits.py", "-o", "empty.py/out.json"], ["empty.py is not a directory"]),
        (["run", "one.py", "--trace", "folder"], ["cannot write the trace file folder"]),
        (["run", "one.py", "--checkpoint", "folder", "--run-id", "r"], ["cannot open checkpoint"]),
        (["run", "one.py", "--checkpoint", "list.json", "--run-id", "r"], ["not a database"]),
        (["cache", "info", "folder"], ["folder is a directory, not a cache file"]),
        (["cache", "clear", "folder"], ["folder is a directory, not a cache file"]),
        (["rn", "one.py"], ["hush: no such command 'rn' (did you mean 'run'?)"]),
        (["cache", "inf"], ["hush cache: no such command 'inf' (did you mean 'info'?)"]),
        (["run"], ["hush run: Missing argument 'FILE.py:GRAPH'"]),
        (["run", "one.py", "--max-concurrency", "0"], ["--max-concurrency"]),
        (["demo", "-o", "answers.txt"], ["hush demo: answers.txt: unknown file type '.txt'"]),
        (["demo", "-o", "folder"], ["hush demo: folder"]),
    ],
)
def test_a_new_users_mistake_is_a_short_error(
    files: Path, args: list[str], said: list[str]
) -> None:
    lines = user_error(hush(*args, cwd=files))
    for expected, line in zip(said, lines, strict=False):
        assert expected in line, (expected, lines)


@pytest.mark.parametrize("flag", [["--run-id", "r"], ["--restart"]])
def test_run_id_or_restart_without_checkpoint_is_one_line(files: Path, flag: list[str]) -> None:
    (line,) = user_error(hush("run", "one.py", *flag, cwd=files), lines=1)
    assert f"hush run: {flag[0]} needs --checkpoint FILE" in line
    assert not (files / "r").exists()


@pytest.mark.parametrize("args", [[], ["cache"]])
def test_a_group_without_its_command_prints_its_help_and_exits_2(
    files: Path, args: list[str]
) -> None:
    out = hush(*args, cwd=files)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"Usage: hush {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND")


def test_the_one_graph_or_engine_of_a_file_runs_without_a_name(files: Path) -> None:
    out = hush("run", "one.py", cwd=files)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"y": 1}


def test_an_output_that_cannot_be_written_prints_the_result_instead(files: Path) -> None:
    (files / "swap.py").write_text(
        "from pathlib import Path\n"
        "from hush import END, PARENT, START, CodeNode, GraphNode\n"
        "def swap():\n"
        "    Path('later').rmdir()\n"
        "    Path('later').write_text('a file where the folder was')\n"
        "    return {'y': 1}\n"
        "with GraphNode(name='g') as graph:\n"
        "    n = CodeNode(name='n', code_fn=swap, outputs={'y': PARENT})\n"
        "    START >> n >> END\n"
    )
    (files / "later").mkdir()
    out = hush("run", "swap.py", "-o", "later/out.json", cwd=files)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert json.loads(out.stdout) == {"y": 1}, "the finished run's result must not be lost"
    assert "cannot write --output later/out.json" in out.stderr.strip().splitlines()[-1]
    made = hush("run", "one.py", "-o", "new/dir/out.json", cwd=files)
    assert made.returncode == 0, made.stderr
    assert json.loads((files / "new/dir/out.json").read_text()) == {"y": 1}
