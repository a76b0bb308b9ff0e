"""``run_batch``: every row of a table through one prompt, answers written back next to it.

Underneath it is a graph like any other: a ``MapNode`` over the rows, each
item a ``PromptNode`` and an ``LLMNode``; rate limits, retries, progress and
tracing work as in ``engine.run``. The run is checkpointed (by default next to
the output, as ``<output>.checkpoint.db``): running the same batch again after a
crash, Ctrl-C or ``kill -9`` continues where it stopped and never asks for a
finished row twice. The output is written atomically at the end and every few
seconds while the batch runs, so it always holds the rows done so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hush.batch.errors import BatchUsageError, TableError
from hush.batch.tables import read_table, write_table
from hush.batch.template import check_columns, load_template, placeholders, with_aliases
from hush.checkpoint import CheckpointMismatchError, load_entries
from hush.checkpoint.errors import CheckpointError
from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode, PromptNode, get_registry
from hush.providers.errors import ResourceError

logger = logging.getLogger("hush.batch")

RESULT_COLUMNS = ("error", "latency_s", "model", "prompt_tokens", "completion_tokens", "cost_usd")
ANSWER_KEYS = ("content", "latency", "model", "usage", "cost")
"""What each row's LLM call gives the table (and its checkpoint keeps)."""
RUN_ID = "batch"
FLUSH_SECONDS = 5.0


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
) -> BatchResult:
    """Send every row of ``source`` through ``prompt`` on resource ``model``; write ``output``.

    ``source`` is a .csv/.xlsx/.jsonl/.parquet path, a list of row dicts, or a
    pandas DataFrame. ``prompt`` and ``system`` are templates with ``{column}``
    placeholders (or ``@file`` to read one). With an ``output`` path, the rows
    are written there with ``answer_column``, ``error``, ``latency_s``, ``model``,
    ``prompt_tokens``, ``completion_tokens`` and ``cost_usd`` after the input's
    columns. ``checkpoint=True`` saves finished rows next to ``output`` (a path
    picks another file, ``False`` none); ``restart`` forgets what was saved.
    ``max_cost``, ``max_total_tokens`` and ``cache`` are those of ``engine.run``:
    rows the budget leaves unsent fail with ``BudgetExceededError`` and are sent
    when the batch runs again with a larger budget.
    Raises :class:`BatchUsageError` before anything is sent when something is wrong.
    """
    out = Path(output) if output is not None else None
    columns, rows = _load(source, sheet)
    user = load_template(prompt, what="--prompt")
    system_text = load_template(system, what="--system") if system is not None else None
    names = placeholders(user, what="the prompt")
    if system_text is not None:
        names += [n for n in placeholders(system_text, what="the system prompt") if n not in names]
    check_columns(names, columns, what="the prompt")
    if answer_column in columns:
        raise BatchUsageError(
            f"the input already has a column '{answer_column}'; choose another with --answer-column"
        )
    _check_model(model)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise BatchUsageError(f"--concurrency must be a positive number, got {concurrency!r}")
    db = _checkpoint_path(checkpoint, out)
    if db is not None and restart:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    aliases = {name: f"c{i}" for i, name in enumerate(names)}
    done: dict[int, dict[str, Any]] = saved_rows(db)
    resumed = len(done)

    def record(position: int, **answer: Any) -> None:
        done[position] = _row_result(answer, None)

    engine = Hush(_graph(rows, aliases, user, system_text, model, concurrency, record))
    out_columns = [*columns, answer_column, *RESULT_COLUMNS]

    def flush() -> None:
        if out is not None:
            write_table(out, out_columns, _table(rows, done, answer_column), sheet)

    writer = asyncio.ensure_future(_flush_periodically(flush))
    try:
        result = await engine.run(
            {"positions": list(range(len(rows)))},
            checkpoint=db,
            run_id=RUN_ID,
            progress=progress,
            tracer=tracer,
            max_concurrency=max_concurrency,
            max_cost=max_cost,
            max_total_tokens=max_total_tokens,
            cache=cache,
        )
    except CheckpointMismatchError:
        raise BatchUsageError(
            f"{db} was saved by a batch with a different prompt, model or input; run with "
            "--restart to start over, or write to another output"
        ) from None
    except BaseException:
        with contextlib.suppress(TableError):
            flush()
        raise
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    state = result["$state"]
    for i, row_result in enumerate(_results(result)):
        done[i] = row_result
    table = _table(rows, done, answer_column)
    try:
        flush()
    except TableError as exc:
        saved = f"; the answers are saved in {db}, run the same command again" if db else ""
        raise TableError(f"{exc}{saved}") from None
    return BatchResult(
        columns=out_columns,
        rows=table,
        output=out,
        checkpoint=db,
        failed=sum(1 for row in table if row["error"]),
        resumed=resumed,
        state=state,
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


def _checkpoint_path(checkpoint: Any, out: Path | None) -> Path | None:
    if checkpoint is False or checkpoint is None:
        return None
    if checkpoint is True:
        return checkpoint_for(out) if out is not None else None
    return Path(checkpoint)


def _graph(
    rows: list[dict[str, Any]],
    aliases: dict[str, str],
    user: str,
    system: str | None,
    model: str,
    concurrency: int,
    record: Any,
) -> GraphNode:
    template: dict[str, str] = {"user": with_aliases(user, aliases)}
    if system is not None:
        template = {"system": with_aliases(system, aliases), **template}
    with GraphNode(name="batch") as graph:
        with MapNode(
            name="rows",
            inputs={"row": Each(rows), "position": Each(PARENT["positions"])},
            max_concurrency=concurrency,
        ) as items:
            fields = CodeNode(
                name="fields",
                code_fn=_fields,
                inputs={"row": PARENT["row"], "aliases": aliases},
                thread=False,
            )
            prompt = PromptNode(
                name="prompt",
                inputs={"prompt": template, **{a: fields[a] for a in aliases.values()}},
            )
            llm = LLMNode(name="llm", resource_key=model, inputs={"messages": prompt["messages"]})
            for key in ANSWER_KEYS:
                llm[key] >> PARENT[key]
            answered = CodeNode(
                name="answered",
                code_fn=record,
                inputs={"position": PARENT["position"]} | {key: llm[key] for key in ANSWER_KEYS},
                thread=False,
            )
            START >> fields >> prompt >> llm >> answered >> END
        for key in (*ANSWER_KEYS, "error"):
            items[key] >> PARENT[key]
        START >> items >> END
    return graph


def _fields(row: dict[str, Any], aliases: dict[str, str]) -> dict[str, str]:
    """A row's values for the template, by alias (an empty cell is an empty string)."""
    return {
        alias: "" if row.get(name) is None else str(row.get(name))
        for name, alias in aliases.items()
    }


def _results(result: dict[str, Any]) -> list[dict[str, Any]]:
    columns = [result[key] for key in ANSWER_KEYS]
    return [
        _row_result(dict(zip(ANSWER_KEYS, values, strict=True)), error)
        for *values, error in zip(*columns, result["error"], strict=True)
    ]


def _row_result(answer: dict[str, Any], error: Any) -> dict[str, Any]:
    if error is not None:
        return {
            "answer": None,
            "error": f"{error.type}: {error.message}",
            **dict.fromkeys(RESULT_COLUMNS[1:]),
        }
    usage = answer.get("usage") or {}
    latency, cost = answer.get("latency"), answer.get("cost")
    return {
        "answer": answer.get("content"),
        "error": "",
        "latency_s": round(latency, 3) if isinstance(latency, float) else None,
        "model": answer.get("model"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cost_usd": round(cost, 8) if isinstance(cost, float) else None,
    }


def saved_rows(db: Path | None) -> dict[int, dict[str, Any]]:
    """Rows a previous run of this batch finished (read back for the first output write)."""
    if db is None or not db.is_file():
        return {}
    try:
        entries = load_entries(db, RUN_ID)
    except (CheckpointError, sqlite3.Error):
        return {}
    prefix = "batch/rows["
    done = {}
    for path, value in entries.items():
        if path.startswith(prefix) and path.endswith("]") and isinstance(value, dict):
            index = path[len(prefix) : -1]
            if index.isdigit():
                done[int(index)] = _row_result(value, None)
    return done


def _table(
    rows: list[dict[str, Any]], done: dict[int, dict[str, Any]], answer_column: str
) -> list[dict[str, Any]]:
    table = []
    for i, row in enumerate(rows):
        result = done.get(i)
        merged = dict(row)
        merged[answer_column] = result["answer"] if result else None
        for column in RESULT_COLUMNS:
            merged[column] = result[column] if result else ("" if column == "error" else None)
        table.append(merged)
    return table


async def _flush_periodically(flush: Any) -> None:
    """Write the output now (rows a previous run finished included), then every few seconds."""
    while True:
        try:
            flush()
        except TableError as exc:
            logger.warning("could not write the rows done so far: %s", exc)
        await asyncio.sleep(FLUSH_SECONDS)
