"""``run_batch``: every row of a table through one prompt, answers written back next to it.

Underneath it is a graph like any other: a ``MapNode`` over the rows' requests
(what each row asks, not where it is), each item a ``PromptNode`` and an
``LLMNode``; rate limits, retries, progress and tracing work as in
``engine.run``. The run is checkpointed (by default next to the output, as
``<output>.checkpoint.db``) and items are keyed by their content: running the
same batch again after a crash, Ctrl-C or ``kill -9`` continues where it
stopped and never asks for a finished row twice, and rows changed since are
asked, never given another row's answer.

Everything that can refuse the batch is checked before the first request, and
the output is first written only once the run is known to be valid (its first
answer arrived), then every few seconds off the event loop, atomically, and at
the end; a refused run leaves an existing output as it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hush.batch.answers import (
    RUN_ID,
    Answers,
    Layout,
    failed,
    render,
    request_key,
    saved_answers,
    with_saved,
)
from hush.batch.checks import (
    check_budget,
    check_concurrency,
    check_destination,
    check_model,
    check_packing,
    layout_for,
    load_rows,
)
from hush.batch.errors import BatchUsageError, TableError
from hush.batch.graphs import CallSpec, packs_graph, rows_graph
from hush.batch.history import HistoryError, parse_history
from hush.batch.output import OutputWriter
from hush.batch.params import check_params
from hush.batch.renamed import translate
from hush.batch.results import BatchResult, packing_of, resumed_rows, settle_packs, settle_rows
from hush.batch.schema import AnswerSchema, load_schema
from hush.batch.template import check_columns, load_template, placeholders, with_aliases
from hush.checkpoint import CheckpointMismatchError
from hush.core import Hush
from hush.core.errors import GraphDefinitionError
from hush.core.run_options import Budget

__all__ = ["BatchResult", "checkpoint_for", "run_batch"]

logger = logging.getLogger("hush.batch")

FLUSH_SECONDS = 5.0


def checkpoint_for(output: Path) -> Path:
    """Where the batch writing ``output`` saves finished rows."""
    return output.with_name(output.name + ".checkpoint.db")


async def run_batch(
    source: str | os.PathLike[str] | Sequence[dict[str, Any]] | Any,
    output: str | os.PathLike[str] | None = None,
    *,
    prompt: str,
    model: str,
    system: str | None = None,
    concurrency: int = 32,
    answer_column: str = "answer",
    sheet: str | None = None,
    checkpoint: str | os.PathLike[str] | bool | None = True,
    restart: bool = False,
    progress: bool | None = None,
    tracer: Any = None,
    max_running_nodes: int | None = None,
    budget: Budget | None = None,
    cache: Any = None,
    params: Mapping[str, Any] | None = None,
    history_column: str | None = None,
    schema: str | AnswerSchema | None = None,
    rows_per_call: int = 1,
    default_answer: str | None = None,
    batch_api: bool = False,
    **renamed: Any,
) -> BatchResult:
    """Send every row of ``source`` through ``prompt`` on resource ``model``; write ``output``.

    ``source`` is a .csv/.xlsx/.jsonl/.parquet path, a list of row dicts, or a
    pandas DataFrame. ``prompt`` and ``system`` are templates with ``{column}``
    placeholders (or ``@file`` to read one). With an ``output`` path, the rows
    are written there with ``answer_column``, ``error``, ``latency_s``, ``queued_s``,
    ``model``, ``prompt_tokens``, ``completion_tokens`` and ``cost_usd`` after the
    input's columns. ``params`` are generation parameters sent with every request
    (``{"max_tokens": 200}``), written in a ``model_config`` column.
    ``history_column`` names a column of JSON message lists placed between the
    system prompt and the row's message. ``schema`` (a JSON Schema file, or
    ``module:Model``) asks for structured answers, one column per top-level field.
    ``rows_per_call`` packs that many rows into one request. ``default_answer`` fills
    the answer (and schema columns, when it is a JSON object) of rows that failed.
    ``batch_api`` sends the calls through the provider's Batch API (half the price; a
    resumed run re-attaches to the batches its checkpoint records).
    ``checkpoint=True`` saves finished rows next to ``output`` (a path picks another
    file, ``False`` none); ``restart`` forgets what was saved. Saved answers are
    matched to rows by what the row asks, so rows added, removed or reordered since
    cost only themselves. ``max_running_nodes``, ``budget`` and ``cache`` are those of
    ``Hush.run``: rows the budget leaves unsent fail with ``BudgetExceededError`` and
    are sent when the batch runs again with a larger budget (the earlier keywords
    ``max_concurrency``, ``max_cost`` and ``max_total_tokens`` still work, with a
    ``DeprecationWarning``).
    Raises :class:`BatchUsageError` before anything is sent (or written) when
    something is wrong.
    """
    max_running_nodes, budget = translate(renamed, max_running_nodes, budget)
    out = Path(output) if output is not None else None
    columns, rows = load_rows(source, sheet)
    user = load_template(prompt, what="--prompt")
    system_text = load_template(system, what="--system") if system is not None else None
    names = placeholders(user, what="the prompt")
    system_names = placeholders(system_text, what="the system prompt") if system_text else []
    names += [n for n in system_names if n not in names]
    check_columns(names, columns, what="the prompt")
    if history_column is not None:
        check_columns([history_column], columns, what="--history-column")
    answer_schema = load_schema(schema) if isinstance(schema, str) else schema
    layout = layout_for(columns, answer_column, answer_schema, model, params, default_answer)
    check_model(model)
    check_concurrency(concurrency)
    check_packing(rows_per_call, system_names, history_column)
    params = dict(params or {})
    check_params(params)
    check_budget(budget, params)
    check_destination(out, source)
    aliases = {name: f"c{i}" for i, name in enumerate(names)}
    spec = CallSpec(
        model=model,
        user=with_aliases(user, aliases),
        system=with_aliases(system_text, aliases) if system_text is not None else None,
        aliases=list(aliases.values()),
        params=params,
        schema=answer_schema,
        history=history_column is not None,
        batch_api=batch_api,
    )
    requests: list[dict[str, Any] | None] = []
    refused: dict[int, dict[str, Any]] = {}
    for position, row in enumerate(rows):
        try:
            requests.append(_request(row, aliases, history_column))
        except HistoryError as exc:
            requests.append(None)
            refused[position] = failed(f"HistoryError: row {position + 1}: {exc}")
    answers = Answers(rows, [r["key"] if r else None for r in requests], refused)
    asked = [i for i, r in enumerate(requests) if r is not None]
    db = _checkpoint_path(checkpoint, out)
    if db is not None and restart:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    writer = _writer(out, layout, columns, answers, sheet, db)

    def answered(key: str, result: dict[str, Any]) -> None:
        answers.answered(key, result)
        writer.start()

    packs = [asked[i : i + rows_per_call] for i in range(0, len(asked), rows_per_call)]
    try:
        if rows_per_call > 1:
            graph = packs_graph(spec, concurrency, answered)
            inputs: dict[str, Any] = {"packs": [[requests[i] for i in pack] for pack in packs]}
        else:
            graph = rows_graph(spec, concurrency, answered)
            inputs = {"requests": [requests[i] for i in asked]}
    except GraphDefinitionError as exc:
        raise BatchUsageError(str(exc)) from None
    engine = Hush(graph)
    result: dict[str, Any] = {}
    try:
        async with writer:
            if asked:
                result = await engine.run(
                    inputs,
                    checkpoint=db,
                    run_id=RUN_ID,
                    progress=progress,
                    tracer=tracer,
                    max_running_nodes=max_running_nodes,
                    budget=budget,
                    cache=cache,
                )
            if rows_per_call > 1:
                settle_packs(answers, packs, result)
            else:
                settle_rows(answers, asked, result)
    except CheckpointMismatchError:
        raise BatchUsageError(
            f"{db} was saved by a batch with a different prompt, model, parameters or "
            "options; run with --restart to start over, or write to another output"
        ) from None
    except TableError as exc:
        if db is None:
            raise
        raise TableError(
            f"{exc}; the answers are saved in {db}: free the place and run the same command again"
        ) from None
    state = result.get("$state")
    return BatchResult(
        columns=layout.columns(columns),
        rows=list(render(rows, answers.results, layout)),
        output=out,
        checkpoint=db,
        failed=answers.failed(),
        resumed=resumed_rows(state, len(asked), rows_per_call),
        state=state,
        packing=packing_of(result) if rows_per_call > 1 else None,
    )


def _checkpoint_path(checkpoint: Any, out: Path | None) -> Path | None:
    if checkpoint is False or checkpoint is None:
        return None
    if checkpoint is True:
        return checkpoint_for(out) if out is not None else None
    return Path(checkpoint)


def _request(
    row: Mapping[str, Any], aliases: Mapping[str, str], history_column: str | None
) -> dict[str, Any]:
    """What the row's LLM call is made of (its template values by alias, its history) and
    its key; raises :class:`HistoryError` for a history cell that is not a message list."""
    fields = {
        alias: "" if row.get(name) is None else str(row.get(name))
        for name, alias in aliases.items()
    }
    content: dict[str, Any] = {"fields": fields}
    if history_column is not None:
        try:
            content["history"] = parse_history(row.get(history_column))
        except HistoryError as exc:
            raise HistoryError(f"{history_column} {exc}; nothing was sent for it") from None
    return {"key": request_key(content), **content}


def _writer(
    out: Path | None,
    layout: Layout,
    columns: Sequence[str],
    answers: Answers,
    sheet: str | None,
    db: Path | None,
) -> OutputWriter:
    """The output writer: this run's answers, and those saved before (read in its thread)."""
    saved: list[dict[str, list[dict[str, Any]]]] = []

    def snapshot() -> Callable[[], Iterable[dict[str, Any]]]:
        results = dict(answers.results)

        def build() -> Iterable[dict[str, Any]]:
            if not saved:
                saved.append(saved_answers(db))
            return render(answers.rows, with_saved(answers.keys, results, saved[0]), layout)

        return build

    return OutputWriter(out, layout.columns(columns), snapshot, sheet=sheet, interval=FLUSH_SECONDS)
