"""``--trace FILE``, shared by ``hush run`` and ``hush batch``, and what ``hush trace`` prints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hush.cli.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def trace_option(command: F) -> F:
    """Add ``--trace FILE``."""
    return click.option(
        "--trace",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="Write a local JSONL trace here.",
    )(command)


def tracer_for(path: Path | None) -> Any:
    """The local tracer writing ``path``, or ``None``."""
    if path is None:
        return None
    from hush.observability import LocalTracer

    return LocalTracer(path)


def print_trace(path: Path) -> None:
    """Print the local trace at ``path`` as a tree; a file without trace records is a
    one-line :class:`UserError`."""
    from hush.observability.local import scan_trace
    from hush.observability.tree import format_tree

    try:
        scanned = scan_trace(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not scanned.records:
        found = f"{scanned.lines} line(s), none a trace record" if scanned.lines else "empty"
        raise UserError(
            f"{path} has no trace records ({found}); write one with --trace FILE or LocalTracer"
        )
    scanned.warn_skipped()
    click.echo(format_tree(scanned.records))
