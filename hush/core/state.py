"""The run record: what ``result["$state"]`` holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hush.core.errors import NodeError

if TYPE_CHECKING:
    from hush.core.plan import GraphPlan

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


class NodeLog:
    """What one execution of a graph outside map items noted per node, by node index.

    The scheduler fills these arrays as nodes finish (cheap); the run record
    turns them into :class:`NodeRecord` objects only when they are read.
    """

    __slots__ = ("attempts", "ended", "errors", "outputs", "plan", "resumed", "started", "status")

    def __init__(
        self,
        plan: GraphPlan,
        status: list[Status | None],
        outputs: list[Any],
        errors: list[NodeError | None],
    ) -> None:
        n = len(plan.nodes)
        self.plan = plan
        self.status = status
        self.outputs = outputs
        self.errors = errors
        self.started: list[float | None] = [None] * n
        self.ended: list[float | None] = [None] * n
        self.attempts = [0] * n
        self.resumed = [False] * n

    def records(self, t0: float, iterations: dict[str, IterationCounters]) -> dict[str, NodeRecord]:
        """A record per node that finished or was skipped (times relative to ``t0``)."""
        out: dict[str, NodeRecord] = {}
        for i, np in enumerate(self.plan.nodes):
            status = self.status[i]
            if status is None:
                continue
            started, ended = self.started[i], self.ended[i]
            value = self.outputs[i]
            out[np.path] = NodeRecord(
                path=np.path,
                kind=np.node.kind,
                status=status,
                started=None if started is None else started - t0,
                ended=None if ended is None else ended - t0,
                attempts=self.attempts[i],
                error=self.errors[i],
                outputs=dict(value) if status == "ok" and value is not None else None,
                counters=iterations.get(np.path),
                resumed=self.resumed[i],
            )
        return out


@dataclass(slots=True)
class RunRecord:
    """The record of one run: statuses, outputs, errors, timings and order.

    Times are seconds since the run started. ``nodes`` has every node outside
    iteration bodies; nodes inside map items appear in ``errors`` when they fail
    and in their iteration node's ``counters``. ``llm`` has, per LLM resource
    used, the limiter's current rates and limits and what this run's own
    requests did there (sent, ok, rate_limited, retries, errors, tokens_used,
    wait time; a concurrent run's requests are not counted, a nested run's are),
    and the run's ``calls``, ``cached``, ``prompt_tokens``, ``completion_tokens``,
    ``total_tokens`` and ``cost`` (USD, ``None`` without a price). ``llm``,
    ``cost`` and ``tokens`` are filled by the run's LLM extension.
    """

    run_id: str
    graph: str
    status: Literal["running", "ok", "error", "cancelled"] = "running"
    started_at: float = 0.0
    duration: float | None = None
    errors: list[NodeError] = field(default_factory=list)
    unhandled: list[NodeError] = field(default_factory=list)
    """The errors no error handler took care of (a failed map item counts), and a
    checkpoint write failure: what makes ``hush run`` exit 1."""
    order: list[str] = field(default_factory=list)
    iterations: dict[str, IterationCounters] = field(default_factory=dict)
    llm: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost: float = 0.0
    """USD spent by the run's priced LLM calls (cached answers cost nothing)."""
    tokens: int = 0
    """Prompt plus completion tokens of the run's LLM requests (cached answers not counted)."""
    dropped_tokens: int = 0
    """``token`` events ``engine.stream()`` dropped because its consumer fell behind."""
    clock: float = field(default=0.0, repr=False, compare=False)
    """``time.perf_counter()`` when the run started (node times are relative to it)."""
    logs: list[NodeLog] = field(default_factory=list, repr=False, compare=False)
    _nodes: dict[str, NodeRecord] | None = field(default=None, repr=False, compare=False)
    _built: int = field(default=-1, repr=False, compare=False)

    @property
    def nodes(self) -> dict[str, NodeRecord]:
        """Per node path (``graph/node``, ``graph/sub/node``), what happened to it.

        A retried container's nodes show its last attempt.
        """
        if self._nodes is None or self._built != len(self.order):
            nodes: dict[str, NodeRecord] = {}
            for log in self.logs:
                nodes.update(log.records(self.clock, self.iterations))
            self._nodes, self._built = nodes, len(self.order)
        return self._nodes

    def __repr__(self) -> str:
        duration = f"{self.duration:.2f}s" if self.duration is not None else "running"
        return (
            f"RunRecord(run_id={self.run_id!r}, graph={self.graph!r}, status={self.status!r}, "
            f"duration={duration}, nodes={len(self.nodes)}, errors={len(self.errors)})"
        )

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
        return {
            "run_id": self.run_id,
            "graph": self.graph,
            "status": self.status,
            "started_at": self.started_at,
            "duration": self.duration,
            "nodes": {k: asdict(v) for k, v in self.nodes.items()},
            "errors": [asdict(e) for e in self.errors],
            "unhandled": [asdict(e) for e in self.unhandled],
            "order": list(self.order),
            "iterations": {k: asdict(v) for k, v in self.iterations.items()},
            "llm": {k: dict(v) for k, v in self.llm.items()},
            "cost": self.cost,
            "tokens": self.tokens,
        }
