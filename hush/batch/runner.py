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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hush.batch.answers import (
    RESULT_COLUMNS,
    RUN_ID,
    Answers,
    failed,
    render,
    request_key,
    saved_answers,
    with_saved,
)
from hush.batch.errors import BatchUsageError, TableError
from hush.batch.output import OutputWriter
from hush.batch.tables import check_output, read_table
from hush.batch.template import check_columns, load_template, placeholders, with_aliases
from hush.checkpoint import CheckpointMismatchError
from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode, PromptNode, get_registry
from hush.providers.errors import ResourceError
from hush.providers.spend import DEFAULT_REPLY_TOKENS

logger = logging.getLogger("hush.batch")

ANSWER_KEYS = ("content", "latency", "queued", "model", "usage", "cost")
"""What a row's LLM call gives its result (``queued`` where the LLM node reports it)."""
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
    params: Mapping[str, Any] | None = None,
) -> BatchResult:
    """Send every row of ``source`` through ``prompt`` on resource ``model``; write ``output``.

    ``source`` is a .csv/.xlsx/.jsonl/.parquet path, a list of row dicts, or a
    pandas DataFrame. ``prompt`` and ``system`` are templates with ``{column}``
    placeholders (or ``@file`` to read one). With an ``output`` path, the rows
    are written there with ``answer_column``, ``error``, ``latency_s``, ``queued_s``,
    ``model``, ``prompt_tokens``, ``completion_tokens`` and ``cost_usd`` after the
    input's columns. ``params`` are generation parameters sent with every request
    (``{"max_tokens": 200}``). ``checkpoint=True`` saves finished rows next to
    ``output`` (a path picks another file, ``False`` none); ``restart`` forgets what
    was saved. Saved answers are matched to rows by what the row asks, so rows added,
    removed or reordered since cost only themselves.
    ``max_cost``, ``max_total_tokens`` and ``cache`` are those of ``engine.run``:
    rows the budget leaves unsent fail with ``BudgetExceededError`` and are sent
    when the batch runs again with a larger budget.
    Raises :class:`BatchUsageError` before anything is sent (or written) when
    something is wrong.
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
    params = dict(params or {})
    _check_budget(max_total_tokens, params)
    if out is not None:
        check_output(out)
    db = _checkpoint_path(checkpoint, out)
    if db is not None and restart:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    aliases = {name: f"c{i}" for i, name in enumerate(names)}
    requests = [_request(row, aliases) for row in rows]
    answers = Answers(rows, [r["key"] for r in requests])
    out_columns = [*columns, answer_column, *RESULT_COLUMNS]
    writer = _writer(out, out_columns, answers, answer_column, sheet, db)

    def answered(key: str, result: dict[str, Any]) -> None:
        answers.answered(key, result)
        writer.start()

    engine = Hush(_graph(aliases, user, system_text, model, concurrency, params, answered))
    try:
        async with writer:
            result = await engine.run(
                {"requests": requests},
                checkpoint=db,
                run_id=RUN_ID,
                progress=progress,
                tracer=tracer,
                max_concurrency=max_concurrency,
                max_cost=max_cost,
                max_total_tokens=max_total_tokens,
                cache=cache,
            )
            for position, row_result in enumerate(_results(result)):
                answers.set(position, row_result)
    except CheckpointMismatchError:
        raise BatchUsageError(
            f"{db} was saved by a batch with a different prompt, model or parameters; run with "
            "--restart to start over, or write to another output"
        ) from None
    except TableError as exc:
        if db is None:
            raise
        raise TableError(
            f"{exc}; the answers are saved in {db}: free the place and run the same command again"
        ) from None
    state = result["$state"]
    return BatchResult(
        columns=out_columns,
        rows=list(render(rows, answers.results, answer_column)),
        output=out,
        checkpoint=db,
        failed=answers.failed(),
        resumed=_resumed(state, len(rows)),
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


def _check_budget(max_total_tokens: int | None, params: Mapping[str, Any]) -> None:
    """A token budget must leave room for one call's reply reservation."""
    reply = params.get("max_tokens")
    reserved = reply if isinstance(reply, int) else DEFAULT_REPLY_TOKENS
    if max_total_tokens is not None and max_total_tokens < reserved:
        raise BatchUsageError(
            f"budget of {max_total_tokens} tokens is below one call's reservation of "
            f"{reserved} tokens; lower --max-tokens or raise the budget"
        )


def _request(row: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """What the row's LLM call is made of (its template values, by alias), and its key."""
    fields = {
        alias: "" if row.get(name) is None else str(row.get(name))
        for name, alias in aliases.items()
    }
    return {"key": request_key(fields), "fields": fields}


def _writer(
    out: Path | None,
    columns: list[str],
    answers: Answers,
    answer_column: str,
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
            return render(answers.rows, with_saved(answers.keys, results, saved[0]), answer_column)

        return build

    return OutputWriter(out, columns, snapshot, sheet=sheet, interval=FLUSH_SECONDS)


def _graph(
    aliases: dict[str, str],
    user: str,
    system: str | None,
    model: str,
    concurrency: int,
    params: Mapping[str, Any],
    answered: Callable[[str, dict[str, Any]], None],
) -> GraphNode:
    template: dict[str, str] = {"user": with_aliases(user, aliases)}
    if system is not None:
        template = {"system": with_aliases(system, aliases), **template}

    def result(request: dict[str, Any], **answer: Any) -> dict[str, Any]:
        row = {**_row_result(answer), "key": request["key"]}
        answered(request["key"], row)
        return {"answer": row}

    with GraphNode(name="batch") as graph:
        with MapNode(
            name="rows",
            inputs={"request": Each(PARENT["requests"])},
            max_concurrency=concurrency,
        ) as items:
            fields = PARENT["request"]["fields"]
            prompt = PromptNode(
                name="prompt",
                inputs={"prompt": template, **{a: fields[a] for a in aliases.values()}},
            )
            llm = LLMNode(
                name="llm", resource_key=model, inputs={"messages": prompt["messages"]}, **params
            )
            keys = [key for key in ANSWER_KEYS if key in (llm.output_keys() or ANSWER_KEYS)]
            answer = CodeNode(
                name="answer",
                code_fn=result,
                inputs={"request": PARENT["request"]} | {key: llm[key] for key in keys},
                outputs={"answer": PARENT},
                thread=False,
            )
            START >> prompt >> llm >> answer >> END
        items["answer"] >> PARENT["answer"]
        items["error"] >> PARENT["error"]
        START >> items >> END
    return graph


def _results(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row's result, in row order."""
    return [
        failed(f"{error.type}: {error.message}") if error is not None else answer
        for answer, error in zip(result["answer"], result["error"], strict=True)
    ]


def _row_result(answer: Mapping[str, Any]) -> dict[str, Any]:
    usage = answer.get("usage") or {}
    cost = answer.get("cost")
    return {
        "answer": answer.get("content"),
        "error": "",
        "latency_s": _seconds(answer.get("latency")),
        "queued_s": _seconds(answer.get("queued")),
        "model": answer.get("model"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cost_usd": round(cost, 8) if isinstance(cost, float) else None,
    }


def _seconds(value: Any) -> float | None:
    return round(value, 3) if isinstance(value, int | float) else None


def _resumed(state: Any, rows: int) -> int:
    """Rows the run took from its checkpoint (all of them when the whole map was saved)."""
    record = state.nodes.get("batch/rows")
    if record is not None and record.resumed:
        return rows
    counters = state.iterations.get("batch/rows")
    return int(counters.resumed) if counters is not None else 0
