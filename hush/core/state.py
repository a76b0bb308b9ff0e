"""The run record: what ``result["$state"]`` holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from hush.core.errors import NodeError

Status = Literal["ok", "error", "skipped"]


@dataclass(slots=True)
class IterationCounters:
    """Live counters of one iteration node: readable while the run goes on."""

    total: int | None = None
    done: int = 0
    failed: int = 0
    running: int = 0
    resumed: int = 0


@dataclass(slots=True)
class NodeRecord:
    """What happened to one node (map items are summarised by their map's counters)."""

    path: str
    kind: str
    status: Status
    started: float | None = None
    ended: float | None = None
    attempts: int = 0
    error: NodeError | None = None
    outputs: dict[str, Any] | None = None
    counters: IterationCounters | None = None
    resumed: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds the node ran, if it ran."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


@dataclass(slots=True)
class RunRecord:
    """The record of one run: statuses, outputs, errors, timings and order.

    Times are seconds since the run started. ``nodes`` has every node outside
    iteration bodies; nodes inside map items appear in ``errors`` when they fail
    and in their iteration node's ``counters``. ``llm`` has, per LLM resource
    used, the limiter's current rates and limits and what its counters (sent,
    ok, rate_limited, retries, errors, tokens_used, wait time) did during the
    run; limiters are shared by the process, so concurrent runs on the same
    resource count in each other's window.
    """

    run_id: str
    graph: str
    status: Literal["running", "ok", "error", "cancelled"] = "running"
    started_at: float = 0.0
    duration: float | None = None
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    errors: list[NodeError] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    iterations: dict[str, IterationCounters] = field(default_factory=dict)
    llm: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def status_of(self, path: str) -> Status:
        """Status of the node at ``path`` (``graph/node``)."""
        return self.nodes[path].status

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-friendly apart from node outputs)."""
        return asdict(self)
