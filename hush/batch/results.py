"""What a batch hands back: each row's result read from the run's outputs, how many
rows came from the checkpoint, and what packing rows saved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hush.batch.answers import Answers, failed


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


def settle_rows(answers: Answers, asked: Sequence[int], result: Mapping[str, Any]) -> None:
    """Each asked row's result, in order (an error becomes a failed row)."""
    if not result:
        return
    outcomes = zip(result["answer"], result["error"], strict=True)
    for position, (answer, error) in zip(asked, outcomes, strict=True):
        answers.set(
            position, failed(f"{error.type}: {error.message}") if error is not None else answer
        )


def settle_packs(
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


def packing_of(result: Mapping[str, Any]) -> Packing | None:
    """Requests and prompt tokens the packs' calls report."""
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


def resumed_rows(state: Any, rows: int, rows_per_call: int) -> int:
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
