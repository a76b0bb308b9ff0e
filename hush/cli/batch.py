"""``hush batch INPUT -o OUTPUT --prompt TEMPLATE --model KEY``: a spreadsheet through an LLM."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from hush.cli.errors import UserError
from hush.cli.spending import (
    budget_hint,
    budget_option,
    cache_option,
    sent_here,
    spend_line,
    spend_options,
)
from hush.cli.tracing import trace_option, tracer_for
from hush.core.errors import RunOptionError


@click.command(short_help="Send every row of a spreadsheet through one prompt.")
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    metavar="OUTPUT",
    help="File to write: .csv, .xlsx, .jsonl (or .parquet with pyarrow).",
)
@click.option(
    "--prompt",
    required=True,
    metavar="TEMPLATE",
    help="Prompt with {column} placeholders, or @file holding it.",
)
@click.option(
    "--model",
    required=True,
    metavar="KEY",
    help="LLM resource key from resources.yaml (e.g. gpt-4o-mini).",
)
@click.option("--system", metavar="TEXT", help="System prompt (placeholders allowed), or @file.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    metavar="N",
    help="Rows sent at once.",
)
@click.option(
    "--answer-column",
    default="answer",
    show_default=True,
    metavar="NAME",
    help="Column the answers go to.",
)
@click.option("--sheet", metavar="NAME", help="Sheet of an .xlsx input (default: the first).")
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    metavar="N",
    help="Longest reply, in tokens (sent as max_tokens; budgets reserve it per call).",
)
@click.option(
    "--history-column",
    metavar="NAME",
    help="Column of JSON message lists ({role, content}) sent between the system prompt "
    "and the row's message.",
)
@click.option(
    "--param",
    "param_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A chat API parameter sent with every request (temperature=0, top_p=1, ...); repeatable.",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(path_type=Path),
    metavar="FILE.json",
    help="Chat API parameters from a JSON object (--param wins).",
)
@click.option(
    "--schema",
    metavar="FILE.json|module:Model",
    help="Structured answers: a JSON Schema file or a pydantic model; one column per field.",
)
@click.option(
    "--rows-per-call",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Rows sent in one request (numbered, answers mapped back by number).",
)
@click.option(
    "--default-answer",
    metavar="VALUE",
    help="Answer written for rows that failed (their error stays; the exit status is 1).",
)
@click.option(
    "--batch-api",
    is_flag=True,
    help="Send the rows through the provider's Batch API: half the price, answers within "
    "24 h; a killed run re-attaches to its batch.",
)
@click.option("--restart", is_flag=True, help="Forget saved rows and start over.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
@trace_option
@spend_options
def batch(
    source: Path,
    output: Path,
    prompt: str,
    model: str,
    system: str | None,
    concurrency: int,
    answer_column: str,
    sheet: str | None,
    max_tokens: int | None,
    history_column: str | None,
    param_pairs: tuple[str, ...],
    params_file: Path | None,
    schema: str | None,
    rows_per_call: int,
    default_answer: str | None,
    batch_api: bool,
    restart: bool,
    progress: bool | None,
    trace: Path | None,
    max_cost: float | None,
    max_total_tokens: int | None,
    cache: str | None,
) -> int:
    """Send every row of INPUT (.csv, .xlsx, .jsonl) through one prompt; write OUTPUT.

    OUTPUT has INPUT's columns and rows in order, then the answer (and one column
    per --schema field), error, latency_s (the request), queued_s (waiting for the
    rate limiter and a slot), model, prompt_tokens, completion_tokens, cost_usd and,
    with parameters, model_config. Finished rows are
    saved as they finish in OUTPUT.checkpoint.db next to OUTPUT: after a crash,
    Ctrl-C or kill, the same command continues and never asks for a finished row
    twice. Exits 0 when every row was answered, 1 when some failed, 2 for usage
    errors (checked before any request is sent).
    """
    from hush.batch import BatchUsageError, checkpoint_for, run_batch
    from hush.batch.answers import saved_answers
    from hush.batch.params import load_params

    tracer = tracer_for(trace)
    started = time.monotonic()
    try:
        params = load_params(param_pairs, params_file, max_tokens=max_tokens)
        with sent_here() as sent:
            result = asyncio.run(
                run_batch(
                    source,
                    output,
                    prompt=prompt,
                    model=model,
                    system=system,
                    concurrency=concurrency,
                    answer_column=answer_column,
                    sheet=sheet,
                    restart=restart,
                    progress=progress,
                    tracer=tracer,
                    budget=budget_option(max_cost, max_total_tokens),
                    cache=cache_option(cache),
                    params=params,
                    history_column=history_column,
                    schema=schema,
                    rows_per_call=rows_per_call,
                    default_answer=default_answer,
                    batch_api=batch_api,
                )
            )
    except (BatchUsageError, RunOptionError) as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        done = sum(len(found) for found in saved_answers(checkpoint_for(output)).values())
        click.echo(
            f"interrupted: {done} row(s) are answered and saved in {checkpoint_for(output)}; "
            f"{output} holds them",
            err=True,
        )
        click.echo("run the same command again to continue", err=True)
        return 130
    total = len(result.rows)
    click.echo(
        f"{total} rows: {total - result.failed} answered, {result.failed} failed, "
        f"{result.resumed} from the checkpoint, in {time.monotonic() - started:.1f}s"
        f"{spend_line(result.state, sent) if result.state else ''}; wrote {output}",
        err=True,
    )
    if result.packing is not None:
        click.echo(f"packed: {result.packing.summary()}", err=True)
    if batch_api:
        click.echo(_batches_line(checkpoint_for(output)), err=True)
    hint = budget_hint(result.state, resumable=True) if result.state else None
    if hint is not None:
        click.echo(hint, err=True)
        return 1
    if result.failed:
        click.echo(
            f"{result.failed} row(s) failed (their error column says why); run the same "
            "command again to retry them",
            err=True,
        )
        return 1
    return 0


def _batches_line(db: Path) -> str:
    """What the run's checkpoint records of its Batch API batches."""
    from hush.batch.answers import RUN_ID
    from hush.providers.batch_api.records import recorded

    batches = {b: len(c) for found in recorded(db, RUN_ID).values() for b, c in found.items()}
    if not batches:
        return "batch API: no batch was submitted"
    ids = ", ".join(batches)
    return f"batch API: {len(batches)} batch(es) of {sum(batches.values())} request(s): {ids}"
