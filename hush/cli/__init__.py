"""The ``hush`` command: run a graph, run a batch, print a graph, serve the local LLM.

Every user error is one or two lines on stderr naming the problem and the fix,
with exit status 2 (``hush --debug ...`` shows the traceback too); a run whose
rows or nodes failed exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from hush import __version__
from hush.cli.errors import UserError
from hush.cli.groups import CommandGroup

COMMANDS = {
    "run": "hush.cli.run:run",
    "batch": "hush.cli.batch:batch",
    "graph": "hush.cli.tools:graph",
    "mock-llm": "hush.cli.tools:mock_llm",
    "demo": "hush.cli.tools:demo",
    "trace": "hush.cli.tools:trace",
    "cache": "hush.cli.spending:cache",
}
"""Each command's module, imported when the command runs or ``--help`` lists it."""


@click.group(
    cls=CommandGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", "-V", prog_name="hush")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def cli(debug: bool) -> None:
    """hush: an asyncio DAG workflow engine for LLM pipelines."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(message)s"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hush`` script."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    name = next((a for a in args if not a.startswith("-")), "")
    prefix = f"hush {name}" if name in COMMANDS else "hush"
    try:
        status = cli.main(args, prog_name="hush", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        _fail(f"{prefix}: {exc.format_message()}", f"(see: {prefix} --help)", debug)
    except click.ClickException as exc:
        _fail(f"{prefix}: {exc.format_message()}", None, debug)
    except UserError as exc:
        _fail(f"{prefix}: {exc}", exc.hint, debug)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, hint: str | None, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(message, err=True)
    if hint:
        click.echo(hint, err=True)
    sys.exit(2)


__all__ = ["cli", "main"]
