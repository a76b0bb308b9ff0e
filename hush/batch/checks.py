"""What can refuse a batch before its first request: the rows, the model, the columns
written, the packing and the budget. Each check raises :class:`BatchUsageError`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hush.batch.answers import RESULT_COLUMNS, Layout
from hush.batch.errors import BatchUsageError
from hush.batch.params import model_config
from hush.batch.schema import AnswerSchema
from hush.batch.tables import check_output, read_table
from hush.core.run_options import Budget
from hush.providers import get_registry
from hush.providers.errors import ResourceError
from hush.providers.spend import DEFAULT_REPLY_TOKENS


def load_rows(source: Any, sheet: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a table path, a list of row dicts or a DataFrame."""
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


def check_model(model: str) -> None:
    """``model`` names a configured LLM resource."""
    try:
        get_registry().get_llm(model)
    except ResourceError as exc:
        raise BatchUsageError(str(exc)) from None


def check_concurrency(concurrency: Any) -> None:
    """``--concurrency`` is a positive number."""
    if not isinstance(concurrency, int) or concurrency < 1:
        raise BatchUsageError(f"--concurrency must be a positive number, got {concurrency!r}")


def check_destination(out: Path | None, source: Any) -> None:
    """The output can be written and is not the input."""
    if out is None:
        return
    check_output(out)
    if isinstance(source, str | os.PathLike) and Path(source).resolve() == out.resolve():
        raise BatchUsageError(f"-o {out} is the input file; write the answers to another file")


def layout_for(
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


def check_packing(rows_per_call: Any, system_names: Sequence[str], history: str | None) -> None:
    """``--rows-per-call`` is a positive number, and above 1 only with a shared prompt."""
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


def check_budget(budget: Budget | None, params: Mapping[str, Any]) -> None:
    """A token budget must leave room for one call's reply reservation."""
    max_total_tokens = budget.max_total_tokens if budget is not None else None
    reply = params.get("max_tokens")
    reserved = reply if isinstance(reply, int) else DEFAULT_REPLY_TOKENS
    if max_total_tokens is not None and max_total_tokens < reserved:
        raise BatchUsageError(
            f"budget of {max_total_tokens} tokens is below one call's reservation of "
            f"{reserved} tokens; lower --max-tokens or raise the budget"
        )
