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

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hush.batch.answers import (
    RESULT_COLUMNS,
    RUN_ID,
    Answers,
    Layout,
    failed,
    render,
    request_key,
    saved_answers,
    with_saved,
)
from hush.batch.errors import BatchUsageError, TableError
from hush.batch.graphs import CallSpec, packs_graph, rows_graph
from hush.batch.history import HistoryError, parse_history
from hush.batch.output import OutputWriter
from hush.batch.params import check_params, model_config
from hush.batch.schema import AnswerSchema, load_schema
from hush.batch.tables import check_output, read_table
from hush.batch.template import check_columns, load_template, placeholders, with_aliases
from hush.checkpoint import CheckpointMismatchError
from hush.core import Hush
from hush.core.errors import GraphDefinitionError
from hush.providers import get_registry
from hush.providers.errors import ResourceError
from hush.providers.spend import DEFAULT_REPLY_TOKENS

logger = logging.getLogger("hush.batch")

FLUSH_SECONDS = 5.0


@dataclass
class Packing:
    """What packing rows saved: requests and prompt tokens, against one row per request."""

    rows: int
    requests: int
    prompt_tokens: int
    alone_estimate: int

    def summary(self) -> str:
        """``"95 rows in 10 requests (not 95), 2,310 prompt tokens (not ~4,560)"``."""
        return (
            f"{self.rows} rows in {self.requests} request(s) (not {self.rows}), "
            f"{self.prompt_tokens:,} prompt tokens (not ~{self.alone_estimate:,})"
        )


@dataclass
class BatchResult:
    """The rows with their answers, and how the batch went."""

    columns: list[str]
    rows: list[dict[str, Any]]
    output: Path | None
    checkpoint: Path | None
    failed: int
    resumed: int
    state: Any = field(repr=False, default=None)
    packing: Packing | None = None
    """With ``rows_per_call`` above 1: what packing saved."""

    @property
    def ok(self) -> bool:
        """Every row was answered."""
        return self.failed == 0


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
    max_concurrency: int | None = None,
    max_cost: float | None = None,
    max_total_tokens: int | None = None,
    cache: Any = None,
    params: Mapping[str, Any] | None = None,
    history_column: str | None = None,
    schema: str | AnswerSchema | None = None,
    rows_per_call: int = 1,
    default_answer: str | None = None,
    batch_api: bool = False,
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
    cost only themselves. ``max_cost``, ``max_total_tokens`` and ``cache`` are those
    of ``engine.run``: rows the budget leaves unsent fail with ``BudgetExceededError``
    and are sent when the batch runs again with a larger budget.
    Raises :class:`BatchUsageError` before anything is sent (or written) when
    something is wrong.
    """
    out = Path(output) if output is not None else None
    columns, rows = _load(source, sheet)
    user = load_template(prompt, what="--prompt")
    system_text = load_template(system, what="--system") if system is not None else None
    names = placeholders(user, what="the prompt")
    system_names = placeholders(system_text, what="the system prompt") if system_text else []
    names += [n for n in system_names if n not in names]
    check_columns(names, columns, what="the prompt")
    if history_column is not None:
        check_columns([history_column], columns, what="--history-column")
    answer_schema = load_schema(schema) if isinstance(schema, str) else schema
    layout = _layout(columns, answer_column, answer_schema, model, params, default_answer)
    _check_model(model)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise BatchUsageError(f"--concurrency must be a positive number, got {concurrency!r}")
    _check_packing(rows_per_call, system_names, history_column)
    params = dict(params or {})
    check_params(params)
    _check_budget(max_total_tokens, params)
    if out is not None:
        check_output(out)
        if isinstance(source, str | os.PathLike) and Path(source).resolve() == out.resolve():
            raise BatchUsageError(f"-o {out} is the input file; write the answers to another file")
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
                    max_concurrency=max_concurrency,
                    max_cost=max_cost,
                    max_total_tokens=max_total_tokens,
                    cache=cache,
                )
            if rows_per_call > 1:
                _settle_packs(answers, packs, result)
            else:
                for position, row_result in zip(asked, _results(result), strict=True):
                    answers.set(position, row_result)
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
        resumed=_resumed(state, len(asked), rows_per_call),
        state=state,
        packing=_packing(result) if rows_per_call > 1 else None,
    )


def _load(source: Any, sheet: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    if isinstance(source, str | os.PathLike):
        columns, rows = read_table(Path(source), sheet)
    elif hasattr(source, "to_dict") and hasattr(source, "columns"):
        columns = [str(c) for c in source.columns]
        rows = source.to_dict("records")
    elif isinstance(source, Sequence) and all(isinstance(r, dict) for r in source):
        columns = list(dict.fromkeys(k for row in source for k in row))
        rows = [dict(r) for r in source]
    else:
        raise BatchUsageError(
            f"a batch reads a file path, a list of row dicts or a DataFrame, not "
            f"{type(source).__name__}"
        )
    if not rows:
        raise BatchUsageError("the input has no rows")
    return columns, rows


def _check_model(model: str) -> None:
    try:
        get_registry().get_llm(model)
    except ResourceError as exc:
        raise BatchUsageError(str(exc)) from None


def _layout(
    columns: Sequence[str],
    answer_column: str,
    schema: AnswerSchema | None,
    model: str,
    params: Mapping[str, Any] | None,
    default_answer: str | None,
) -> Layout:
    """Where the answers go; every added column must be new to the input."""
    fields = schema.columns if schema is not None else []
    constants = {"model_config": model_config(model, params)} if params else {}
    added = [answer_column, *fields, *RESULT_COLUMNS, *constants]
    for name in added:
        if name in columns:
            what = "choose another with --answer-column" if name == answer_column else ""
            source = "a --schema field" if name in fields else "a column hush batch writes"
            hint = what or f"it is {source}; rename the input column"
            raise BatchUsageError(f"the input already has a column '{name}'; {hint}")
    clash = [name for name in fields if name in (answer_column, *RESULT_COLUMNS, *constants)]
    if clash:
        raise BatchUsageError(
            f"--schema field '{clash[0]}' would overwrite a column hush batch writes; rename it"
        )
    return Layout(answer_column, fields, constants, _default(default_answer, schema))


def _default(value: str | None, schema: AnswerSchema | None) -> dict[str, Any] | None:
    """The cells of a failed row under ``--default-answer``."""
    if value is None:
        return None
    cells: dict[str, Any] = {"answer": value}
    if schema is not None:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            cells |= schema.cells(parsed)
    return cells


def _check_packing(rows_per_call: int, system_names: Sequence[str], history: str | None) -> None:
    if not isinstance(rows_per_call, int) or rows_per_call < 1:
        raise BatchUsageError(f"--rows-per-call must be a positive number, got {rows_per_call!r}")
    if rows_per_call == 1:
        return
    if system_names:
        raise BatchUsageError(
            "--rows-per-call sends one system prompt for several rows: it cannot use "
            f"placeholders ({', '.join('{' + n + '}' for n in system_names)}); move them to "
            "--prompt"
        )
    if history is not None:
        raise BatchUsageError(
            "--rows-per-call cannot be combined with --history-column (each row's history is "
            "its own conversation)"
        )


def _checkpoint_path(checkpoint: Any, out: Path | None) -> Path | None:
    if checkpoint is False or checkpoint is None:
        return None
    if checkpoint is True:
        return checkpoint_for(out) if out is not None else None
    return Path(checkpoint)


def _check_budget(max_total_tokens: int | None, params: Mapping[str, Any]) -> None:
    """A token budget must leave room for one call's reply reservation."""
    reply = params.get("max_tokens")
    reserved = reply if isinstance(reply, int) else DEFAULT_REPLY_TOKENS
    if max_total_tokens is not None and max_total_tokens < reserved:
        raise BatchUsageError(
            f"budget of {max_total_tokens} tokens is below one call's reservation of "
            f"{reserved} tokens; lower --max-tokens or raise the budget"
        )


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


def _results(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each asked row's result, in order."""
    if not result:
        return []
    return [
        failed(f"{error.type}: {error.message}") if error is not None else answer
        for answer, error in zip(result["answer"], result["error"], strict=True)
    ]


def _settle_packs(
    answers: Answers, packs: Sequence[Sequence[int]], result: Mapping[str, Any]
) -> None:
    """Each packed row's result, by position (a pack that failed fails its rows)."""
    if not result:
        return
    for positions, rows, error in zip(packs, result["answers"], result["error"], strict=True):
        for i, position in enumerate(positions):
            if error is not None:
                answers.set(position, failed(f"{error.type}: {error.message}"))
            elif rows is None or i >= len(rows):
                answers.set(position, failed("the pack gave no answer for this row"))
            else:
                answers.set(position, rows[i])


def _packing(result: Mapping[str, Any]) -> Packing | None:
    stats = [s for s in result.get("stats") or [] if isinstance(s, dict)]
    rows = result.get("answers") or []
    if not stats:
        return None
    return Packing(
        rows=sum(len(r) for r in rows if r),
        requests=sum(int(s["requests"]) for s in stats),
        prompt_tokens=sum(int(s["prompt_tokens"]) for s in stats),
        alone_estimate=sum(int(s["alone_estimate"]) for s in stats),
    )


def _resumed(state: Any, rows: int, rows_per_call: int) -> int:
    """Rows the run took from its checkpoint (all when the whole map was saved; with packs,
    the rows of the packs taken, the last one counted full)."""
    if state is None:
        return 0
    path = "batch/packs" if rows_per_call > 1 else "batch/rows"
    record = state.nodes.get(path)
    if record is not None and record.resumed:
        return rows
    counters = state.iterations.get(path)
    return min(rows, int(counters.resumed) * rows_per_call) if counters is not None else 0
