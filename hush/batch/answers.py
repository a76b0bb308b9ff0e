"""The answers of a batch, matched to its input rows by content.

A row's *request* is what its LLM call is made of (the values its templates
use); its key is a digest of that content, never its position, so a saved
answer goes back to every row asking the same thing wherever that row now is,
and to no other row. The table written out is the input rows with their
answers, as far as they are known.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from hush.checkpoint import load_entries
from hush.checkpoint.errors import CheckpointError

logger = logging.getLogger("hush.batch")

RESULT_COLUMNS = (
    "error",
    "latency_s",
    "queued_s",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
)
"""The columns after the answer column, in order."""
RUN_ID = "batch"
"""The run id of a batch in its checkpoint file."""


def request_key(request: Mapping[str, Any]) -> str:
    """The digest of a row's request (JSON of its text values, so equal content, equal key)."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def failed(error: str) -> dict[str, Any]:
    """The result of a row that has no answer."""
    return {"answer": None, "error": error, **dict.fromkeys(RESULT_COLUMNS[1:])}


class Answers:
    """The rows of a batch and the answers known so far, by row and by content key."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        keys: Sequence[str | None],
        results: Mapping[int, dict[str, Any]] | None = None,
    ) -> None:
        self.rows = rows
        self.keys = keys
        self.results: dict[int, dict[str, Any]] = dict(results or {})
        self._positions: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            if key is not None:
                self._positions.setdefault(key, []).append(position)

    def answered(self, key: str, result: Mapping[str, Any]) -> None:
        """A request was answered: give the answer to a row asking it that has none yet."""
        for position in self._positions.get(key, ()):
            if position not in self.results:
                self.results[position] = dict(result)
                return

    def set(self, position: int, result: Mapping[str, Any]) -> None:
        """Row ``position``'s final result."""
        self.results[position] = dict(result)

    def failed(self) -> int:
        """Rows with an error."""
        return sum(1 for result in self.results.values() if result.get("error"))


def with_saved(
    keys: Sequence[str | None],
    results: Mapping[int, Mapping[str, Any]],
    saved: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[int, Mapping[str, Any]]:
    """``results`` with saved answers given to the rows without one that ask the same."""
    merged = dict(results)
    used: dict[str, int] = {}
    for position, key in enumerate(keys):
        if position in merged or key is None or key not in saved:
            continue
        taken = used.get(key, 0)
        if taken < len(saved[key]):
            merged[position] = saved[key][taken]
            used[key] = taken + 1
    return merged


@dataclass(frozen=True)
class Layout:
    """The columns a batch adds after the input's, and what fills a failed row."""

    answer_column: str = "answer"
    fields: Sequence[str] = ()
    """One column per top-level field of ``--schema``, after the answer."""
    constants: Mapping[str, Any] = dataclass_field(default_factory=dict)
    """Columns with one value for every row (``model_config``), at the end."""
    default: Mapping[str, Any] | None = None
    """``--default-answer``: the answer (and field) cells of a row that failed."""

    def columns(self, inputs: Sequence[str]) -> list[str]:
        """The output's columns."""
        return [*inputs, self.answer_column, *self.fields, *RESULT_COLUMNS, *self.constants]


def render(
    rows: Sequence[dict[str, Any]], results: Mapping[int, Mapping[str, Any]], layout: Layout
) -> Iterator[dict[str, Any]]:
    """The input rows with their answer and result columns (empty where not known), one at a
    time (a writer holds one row, not a second copy of the table)."""
    empty: dict[str, Any] = {"answer": None, "error": ""}
    for position, row in enumerate(rows):
        result = results.get(position, empty)
        if layout.default is not None and result.get("error"):
            result = {**result, **layout.default}
        merged = dict(row)
        merged[layout.answer_column] = result.get("answer")
        for column in (*layout.fields, *RESULT_COLUMNS):
            merged[column] = result.get(column)
        merged.update(layout.constants)
        yield merged


def saved_answers(db: Path | None) -> dict[str, list[dict[str, Any]]]:
    """The answers a previous run of the batch saved in checkpoint ``db``, by request key.

    Read only to show them in the output while the batch runs; the run itself takes
    them from its checkpoint.
    """
    if db is None or not db.is_file():
        return {}
    try:
        entries = load_entries(db, RUN_ID)
    except (CheckpointError, sqlite3.Error, OSError) as exc:
        logger.debug("no saved answers in %s: %s", db, exc)
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    for value in entries.values():
        if not isinstance(value, dict):
            continue
        packed = value.get("answers")
        answers = packed if isinstance(packed, list) else [value.get("answer")]
        for answer in answers:
            if (
                isinstance(answer, dict)
                and isinstance(answer.get("key"), str)
                and not answer.get("error")
            ):
                found.setdefault(answer["key"], []).append(answer)
    return found
