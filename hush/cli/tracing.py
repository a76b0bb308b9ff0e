"""``--trace FILE``, shared by ``hush run`` and ``hush batch``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

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
