"""The README as a newcomer uses it: the quick start pasted into an empty directory, the demo."""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def clean_env() -> dict[str, str]:
    """The environment of a fresh shell: no resource file, no provider key."""
    drop = {"HUSH_CONFIG", "OPENAI_API_KEY", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def python(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` with the set-up command's interpreter and a clean env."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )


def test_quick_start_runs_verbatim_in_an_empty_directory(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    (tmp_path / "quick_start.py").write_text(blocks[0])
    out = python(tmp_path, "quick_start.py")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == (
        "['[gpt-4o-mini] reply to: What is 2+2?', '[gpt-4o-mini] reply to: Capital of France?']"
    )
    assert lines[1].startswith("RunRecord(") and "status='ok'" in lines[1]
    assert "errors=0" in lines[1] and len(lines) == 2
    assert "Traceback" not in out.stderr


def test_the_real_provider_change_is_a_drop_in_for_the_local_lines() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    quick_start, change = blocks[0], blocks[1]
    assert "MockLLMServer().start_in_thread()" in quick_start
    assert 'os.environ["OPENAI_API_KEY"]' in change and "register(" in change
    replaced = [
        line
        for line in quick_start.splitlines()
        if "server" not in line.lower() or line.startswith("from hush")
    ]
    compile("\n".join([*change.splitlines(), *replaced]), "readme-real.py", "exec")


def test_set_up_commands_install_only_what_each_needs() -> None:
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README.read_text())
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "pip install -q -e . " in demo and "[dev]" not in demo
    assert demo.endswith(".venv/bin/hush demo")
    assert "-e '.[dev]'" in tests and tests.endswith(".venv/bin/python -m pytest")


def test_demo_writes_its_answers_and_says_where(tmp_path: Path) -> None:
    out = python(tmp_path, "-m", "hush.cli", "demo", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    written = tmp_path / "hush-demo-answers.csv"
    with written.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 120
    labels = {"billing", "delivery", "product", "account", "other"}
    assert {r["answer"] for r in rows} <= labels, "the demo must show labels, not echoes"
    assert len({r["answer"] for r in rows}) > 1
    assert str(written) in out.stdout
    assert "hush/demo.py" in out.stdout and "hush batch" in out.stdout
    again = python(tmp_path, "-m", "hush.cli", "demo", "--no-progress")
    assert again.returncode == 0 and "120 from the checkpoint" in again.stdout


def test_the_demo_says_its_labels_are_not_a_models(tmp_path: Path) -> None:
    out = python(tmp_path, "-m", "hush.cli", "demo", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    notes = [line for line in out.stdout.splitlines() if "not a model's answers" in line]
    assert len(notes) == 1 and "at random" in notes[0]


def test_the_demos_printed_commands_run_as_printed(tmp_path: Path) -> None:
    demo_dir, by_hand_dir = tmp_path / "demo", tmp_path / "by-hand"
    demo_dir.mkdir()
    by_hand_dir.mkdir()
    out = python(demo_dir, "-m", "hush.cli", "demo", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    start = lines.index(
        "Running the equivalent of these two commands (the first in another terminal):"
    )
    server_command, batch_command = (line.strip() for line in lines[start + 1 : start + 3])
    assert server_command == "hush mock-llm", "the resources file expects its default port"
    env = clean_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    server = subprocess.Popen(
        [*shlex.split(server_command), "--port", "0"],
        cwd=by_hand_dir,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        ready = server.stderr.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/v1", ready)
        assert port, ready
        env["HUSH_DEMO_PORT"] = port.group(1)
        ran = subprocess.run(
            ["bash", "-c", batch_command + " --no-progress"],
            cwd=by_hand_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "120 answered, 0 failed, 0 from the checkpoint" in ran.stderr

    def answers(folder: Path) -> list[str]:
        with (folder / "hush-demo-answers.csv").open(newline="", encoding="utf-8") as f:
            return [row["answer"] for row in csv.DictReader(f)]

    assert answers(by_hand_dir) == answers(demo_dir)


def test_the_demos_answers_are_ignored_by_git() -> None:
    listed = subprocess.run(
        ["git", "check-ignore", "hush-demo-answers.csv", "hush-demo-answers.csv.checkpoint.db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2, listed
