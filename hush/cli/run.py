"""``hush run FILE.py:GRAPH``: run a graph once, print its result and a summary."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from hush.checkpoint import CheckpointError, CheckpointMismatchError, list_runs
from hush.cli.errors import UserError
from hush.cli.loading import check_writable, load_graph, load_inputs, to_jsonable
from hush.cli.spending import (
    budget_hint,
    budget_option,
    cache_option,
    sent_here,
    spend_line,
    spend_options,
)
from hush.cli.tracing import trace_option, tracer_for
from hush.core.engine import Hush
from hush.core.errors import MissingInputError, RunOptionError
from hush.core.run_options import Checkpoint
from hush.core.state import RunRecord
from hush.providers.spend import RunSpend


@click.command(short_help="Run a graph from a Python file.")
@click.argument("target", metavar="FILE.py:GRAPH")
@click.option(
    "-i",
    "--inputs",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="JSON file of run inputs.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Write the result as JSON here.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="SQLite file where finished work is saved (needs --run-id).",
)
@click.option(
    "--run-id",
    metavar="ID",
    help="Run id: run again with the same id to resume (needs --checkpoint).",
)
@click.option("--restart", is_flag=True, help="Forget what the checkpoint saved for this run id.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bars (default: on a terminal)."
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run-wide cap on leaf nodes running at once.",
)
@trace_option
@spend_options
def run(
    target: str,
    inputs: Path | None,
    output: Path | None,
    checkpoint: Path | None,
    run_id: str | None,
    restart: bool,
    progress: bool | None,
    max_concurrency: int | None,
    trace: Path | None,
    max_cost: float | None,
    max_total_tokens: int | None,
    cache: str | None,
) -> int:
    """Run a graph and print its result and a summary.

    Exits 0 when nothing failed (or every error was handled by an error
    handler), 1 when nodes or map items failed, 2 for usage errors.
    """
    if checkpoint is not None and run_id is None:
        raise UserError("--checkpoint needs --run-id", "add --run-id NAME; the same name resumes")
    if checkpoint is None and (run_id is not None or restart):
        given = "--run-id" if run_id is not None else "--restart"
        raise UserError(
            f"{given} needs --checkpoint FILE: without one nothing is saved to resume or restart"
        )
    if output is not None:
        check_writable(output, "--output")
    graph = load_graph(target)
    data = load_inputs(inputs)
    try:
        tracer = tracer_for(trace)
    except OSError as exc:
        raise UserError(f"cannot write the trace file {trace}: {exc.strerror}") from None
    engine = Hush(graph)
    try:
        with sent_here() as sent:
            result = asyncio.run(
                engine.run(
                    data,
                    checkpoint=Checkpoint(checkpoint, restart=restart) if checkpoint else None,
                    run_id=run_id,
                    progress=progress,
                    max_running_nodes=max_concurrency,
                    tracer=tracer,
                    budget=budget_option(max_cost, max_total_tokens),
                    cache=cache_option(cache),
                )
            )
    except MissingInputError as exc:
        raise UserError(str(exc), "give them in a JSON file with --inputs FILE") from None
    except RunOptionError as exc:
        raise UserError(str(exc)) from None
    except CheckpointMismatchError as exc:
        raise UserError(
            f"run '{exc.run_id}' in {exc.file} was saved by a different graph "
            f"({exc.entries} saved result(s))",
            "add --restart to start it over, or use another --run-id",
        ) from None
    except CheckpointError as exc:
        raise UserError(str(exc), "--checkpoint takes a SQLite file hush writes") from None
    except KeyboardInterrupt:
        _interrupted(checkpoint, run_id)
        return 130
    state: RunRecord = result.pop("$state")
    text = json.dumps(to_jsonable(result), indent=2, ensure_ascii=False)
    unwritten = _write(output, text) if output is not None else None
    if output is None:
        click.echo(text[:4000] + ("\n..." if len(text) > 4000 else ""))
    _summary(state, sent, resumable=checkpoint is not None)
    if unwritten is not None:
        raise UserError(f"cannot write --output {output}: {unwritten}; the result is printed above")
    return 1 if state.unhandled else 0


def _write(output: Path, text: str) -> str | None:
    """Write the result to ``output`` (its folder made as needed); on failure print the
    result on stdout, so the finished run is not lost, and return why it failed."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(text)
        return exc.strerror or str(exc)
    return None


def _summary(state: RunRecord, sent: RunSpend, *, resumable: bool = False) -> None:
    items = sum(c.resumed for c in state.iterations.values())
    nodes = sum(1 for n in state.nodes.values() if n.resumed)
    resumed = f", resumed: {nodes} node(s), {items} item(s)" if items or nodes else ""
    outcome, errors = _outcome(state)
    click.echo(
        f"run {state.run_id}: {outcome} in {state.duration or 0:.2f}s, {len(state.nodes)} nodes"
        f"{errors}{resumed}{spend_line(state, sent)}",
        err=True,
    )
    for error in state.unhandled[:10]:
        click.echo(f"  {error}", err=True)
    if len(state.unhandled) > 10:
        click.echo(f"  ... and {len(state.unhandled) - 10} more", err=True)
    hint = budget_hint(state, resumable=resumable)
    if hint is not None:
        click.echo(hint, err=True)


def _outcome(state: RunRecord) -> tuple[str, str]:
    """The run's word and its error count: ``ok (2 handled)`` when error handlers took care
    of every error (the run exits 0), else the status and ``, 3 error(s) (1 handled)``."""
    handled = len(state.errors) - len(state.unhandled)
    if state.status in ("ok", "error") and not state.unhandled:
        return (f"ok ({handled} handled)" if handled else "ok"), ""
    note = f" ({handled} handled)" if handled else ""
    return state.status, f", {len(state.errors)} error(s){note}"


def _interrupted(checkpoint: Path | None, run_id: str | None) -> None:
    if checkpoint is None or run_id is None:
        click.echo(
            "interrupted; nothing was saved (add --checkpoint FILE --run-id ID to keep "
            "finished work and resume)",
            err=True,
        )
        return
    saved = next((r.entries for r in _runs(checkpoint) if r.run_id == run_id), 0)
    command = [a for a in sys.argv if a != "--restart"]
    command[0] = "hush"
    click.echo(
        f"interrupted: {saved} finished result(s) of run '{run_id}' are saved in {checkpoint}",
        err=True,
    )
    click.echo(f"resume with: {shlex.join(command)}", err=True)


def _runs(checkpoint: Path) -> list[Any]:
    try:
        return list_runs(checkpoint)
    except Exception:
        return []
