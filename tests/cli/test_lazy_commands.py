"""``hush`` imports a sub-command's module only when the command runs or ``--help`` lists
it; what the user sees is the same as when every command was imported up front."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click

from hush.cli import COMMANDS, cli


def _command(target: str) -> click.Command:
    module, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


def test_help_lists_every_command_with_its_own_short_help(tmp_path: Path) -> None:
    page = subprocess.run(
        [sys.executable, "-m", "hush.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    listed = page.split("Commands:\n", 1)[1].splitlines()
    expected = [
        (name, _command(COMMANDS[name]).get_short_help_str(limit=80)) for name in sorted(COMMANDS)
    ]
    assert [line.split(None, 1) for line in listed] == [[n, h] for n, h in expected]


def test_each_command_is_registered_under_its_own_name() -> None:
    context = click.Context(cli)
    for name, target in COMMANDS.items():
        assert cli.get_command(context, name) is _command(target)
        assert _command(target).name == name


def test_running_one_command_imports_no_other_command_module(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from hush.cli import main\n"
        "try:\n"
        "    main(['cache', 'info', sys.argv[1]])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('hush.cli.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "cache.db")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    loaded = done.stdout.strip().splitlines()[-1]
    assert "hush.cli.run" not in loaded and "hush.cli.tools" not in loaded, loaded
    assert "hush.cli.spending" in loaded
