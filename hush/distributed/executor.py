"""``RayExecutor``: a map's items run in Ray worker processes, everything else stays the same.

The driver keeps the run: it pulls items as the map's ``max_concurrency``
allows (so at most that many are in flight across the cluster, and a huge or
lazy input is never submitted whole), looks each up in the checkpoint, sends the
others to the least busy worker, and on return commits them, emits what the
worker reported (node events, for tracers, progress and ``engine.stream()``),
and counts their LLM spend. The body graph is shipped to the cluster once per
map, each worker fetching it on its first item. A worker lost mid-item (its
process died) is replaced and the item sent again, up to ``max_item_retries``
times.

Lifecycle: the executor connects to Ray on first use: to the running Ray
instance if this process already called ``ray.init``, else to ``address`` (or
``RAY_ADDRESS``), else it starts a local instance with ``num_cpus``. It never
calls ``ray.init`` twice. :meth:`RayExecutor.shutdown` stops its workers, and
shuts Ray down only if the executor started it; otherwise Ray is yours to stop.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any

import ray
from ray import cloudpickle
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from hush.core.errors import NodeInputError
from hush.core.runtime import GraphOutcome

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.plan import GraphPlan
    from hush.distributed.worker import ItemResult

logger = logging.getLogger(__name__)

LOST_WORKER = (ActorDiedError, ActorUnavailableError, RayActorError)


class RayExecutor:
    """Runs map items on a Ray cluster (see the module docstring).

    ``address``: the cluster to join (default ``RAY_ADDRESS``, else a local
    instance); ``num_cpus``: CPUs of a local instance started by the executor;
    ``workers``: worker processes (default: the cluster's CPUs); ``items_per_worker``:
    items one worker runs at once on its event loop (1 suits CPU-bound bodies; raise
    it for bodies that mostly wait, such as LLM calls); ``cpus_per_worker``: the CPUs
    Ray reserves for each worker (0 for bodies that mostly wait); other keyword
    arguments go to ``ray.init``
    (``runtime_env={"working_dir": "."}`` ships your project to a remote cluster).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        workers: int | None = None,
        items_per_worker: int = 1,
        cpus_per_worker: float = 1.0,
        max_item_retries: int = 3,
        start_timeout: float = 120.0,
        **ray_init_options: Any,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.workers = workers
        self.items_per_worker = items_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.start_timeout = start_timeout
        self.max_item_retries = max_item_retries
        self.ray_init_options = ray_init_options
        self.started_ray = False
        """Whether this executor called ``ray.init`` (and so shuts Ray down)."""
        self._lock = threading.Lock()
        self._pool: list[Any] = []
        self._busy: list[int] = []
        self._holds: list[set[str]] = []
        """Per worker, the bodies already sent to it (later items carry no ref)."""
        self._bodies: dict[int, tuple[GraphPlan, str, Any]] = {}

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Ray (or start it) and start the workers. Done on first use (blocking
        the event loop for the few seconds Ray takes to start); call it beforehand to
        start the cluster when you choose."""
        with self._lock:
            if self._pool:
                return
            if not ray.is_initialized():
                options = dict(self.ray_init_options)
                options.setdefault("include_dashboard", False)
                options.setdefault("log_to_driver", False)
                options.setdefault("logging_level", logging.ERROR)
                options["runtime_env"] = _with_driver_path(options.get("runtime_env"))
                address = self.address or os.environ.get("RAY_ADDRESS")
                if address:
                    ray.init(address=address, **options)
                else:
                    ray.init(num_cpus=self.num_cpus, **options)
                self.started_ray = True
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            self._pool = [self._runner() for _ in range(count)]
            self._busy = [0] * count
            self._holds = [set() for _ in range(count)]
            try:
                ray.get([runner.ping.remote() for runner in self._pool], timeout=self.start_timeout)
            except ray.exceptions.GetTimeoutError:
                for runner in self._pool:
                    ray.kill(runner)
                self._pool = []
                free = ray.available_resources().get("CPU", 0)
                raise RuntimeError(
                    f"RayExecutor: {count} workers of {self.cpus_per_worker:g} CPU each did not "
                    f"start within {self.start_timeout:g} s ({free:g} CPU free in the cluster); "
                    "use fewer workers, cpus_per_worker=0 for bodies that mostly wait, or shut "
                    "down the executors you no longer use"
                ) from None
            logger.info(
                "RayExecutor: %d workers on %s", count, ray.get_runtime_context().gcs_address
            )

    def shutdown(self) -> None:
        """Stop the workers; shut Ray down if this executor started it."""
        with self._lock:
            for runner in self._pool:
                ray.kill(runner)
            self._pool, self._busy, self._holds, self._bodies = [], [], [], {}
            if self.started_ray and ray.is_initialized():
                ray.shutdown()
                self.started_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __getstate__(self) -> dict[str, Any]:
        """Only the settings travel (a graph holding the executor can be shipped)."""
        return {
            "address": self.address,
            "num_cpus": self.num_cpus,
            "workers": self.workers,
            "items_per_worker": self.items_per_worker,
            "cpus_per_worker": self.cpus_per_worker,
            "max_item_retries": self.max_item_retries,
            "start_timeout": self.start_timeout,
            "ray_init_options": self.ray_init_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["address"],
            state["num_cpus"],
            workers=state["workers"],
            items_per_worker=state["items_per_worker"],
            cpus_per_worker=state["cpus_per_worker"],
            max_item_retries=state["max_item_retries"],
            start_timeout=state["start_timeout"],
            **state["ray_init_options"],
        )

    def __repr__(self) -> str:
        where = self.address or os.environ.get("RAY_ADDRESS") or "local"
        return f"RayExecutor({where!r}, workers={len(self._pool) or self.workers})"

    # ---- running items ---------------------------------------------------------------

    async def run_body(
        self, call: NodeCall, plan: GraphPlan, path: str, state: dict[str, Any]
    ) -> GraphOutcome:
        """Run one item's body in a worker; return its outcome as a local run would."""
        if not self._pool:
            self.start()
        body_id, body_ref = self._body(call, plan)
        run = call.run
        observed = run.emit is not None
        for attempt in range(self.max_item_retries + 1):
            index = min(range(len(self._pool)), key=self._busy.__getitem__)
            runner = self._pool[index]
            try:
                first = body_id not in self._holds[index]
                carried = [body_ref] if first else []
                pending = runner.run.remote(body_id, carried, state, path, run.run_id, observed)
                self._holds[index].add(body_id)
            except (TypeError, ValueError, pickle.PicklingError) as exc:
                raise _unshippable_input(call, path, state, exc) from None
            self._busy[index] += 1
            try:
                result: ItemResult = await pending
                break
            except LOST_WORKER as exc:
                if attempt == self.max_item_retries:
                    raise
                logger.warning("%s: its Ray worker was lost (%s); sending it again", path, exc)
                self._replace(index, runner)
            finally:
                self._busy[index] -= 1
        if observed and run.emit is not None:
            for event in result.events:
                run.emit(event)
        _count_spend(result.spend)
        return GraphOutcome(result.written, result.error, result.errors, result.unhandled, [])

    def _body(self, call: NodeCall, plan: GraphPlan) -> tuple[str, Any]:
        """The body's id and object ref: put in the object store once per plan (the plan is
        kept, so its ``id`` is not reused by another while the executor lives)."""
        found = self._bodies.get(id(plan))
        if found is None or found[0] is not plan:
            try:
                cloudpickle.dumps(plan)
            except Exception as exc:
                raise _unshippable_body(call, plan, exc) from None
            found = (plan, uuid.uuid4().hex, ray.put((plan, _llm_resources())))
            self._bodies[id(plan)] = found
        return found[1], found[2]

    def _runner(self) -> Any:
        from hush.distributed.worker import ItemRunner

        return ItemRunner.options(  # type: ignore[attr-defined]
            max_concurrency=self.items_per_worker, num_cpus=self.cpus_per_worker
        ).remote()

    def _replace(self, index: int, lost: Any) -> None:
        if self._pool[index] is lost:
            self._pool[index] = self._runner()
            self._holds[index] = set()


def _with_driver_path(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The runtime env with the driver's ``sys.path`` as workers' ``PYTHONPATH`` (unless it
    sets one), so code importable here is importable there on the same machine; on other
    machines, ship it with ``runtime_env={"working_dir": ...}``."""
    env = dict(runtime_env or {})
    variables = dict(env.get("env_vars") or {})
    if "PYTHONPATH" not in variables:
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        variables["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["env_vars"] = variables
    return env


def _llm_resources() -> dict[str, Any]:
    """The driver's LLM resources, for the workers."""
    from hush.providers.errors import ResourceError
    from hush.providers.resources import get_registry

    registry = get_registry()
    found = {}
    for key in registry.keys():  # noqa: SIM118 (a registry, not a dict)
        if key.startswith("llm:"):
            try:
                found[key] = registry.get_llm(key)
            except ResourceError:
                continue
    return found


def _count_spend(summary: dict[str, dict[str, Any]]) -> None:
    from hush.providers.spend import current

    spend = current.get()
    if spend is not None:
        spend.absorb(summary)


def _unshippable_body(call: NodeCall, plan: GraphPlan, exc: Exception) -> NodeInputError:
    """Name the node of the body that cannot be pickled, and what of it."""
    culprit = f"its body ({type(exc).__name__}: {exc})"
    for node_plan in plan.nodes:
        node = node_plan.node
        for what, value in (
            ("code function", getattr(node, "code_fn", None)),
            ("inputs", node.inputs),
        ):
            try:
                cloudpickle.dumps(value)
            except Exception as inner:
                culprit = f"node '{node.path}': its {what} ({type(inner).__name__}: {inner})"
                break
        else:
            continue
        break
    return NodeInputError(
        f"{type(call.node).__name__} '{call.node.name}' cannot be sent to Ray workers: "
        f"{culprit} cannot be pickled; define it at module level and keep locks, files and "
        "connections out of it"
    )


def _unshippable_input(
    call: NodeCall, path: str, state: dict[str, Any], exc: Exception
) -> NodeInputError:
    """Name the item input that cannot be pickled."""
    for key, value in state.items():
        try:
            cloudpickle.dumps(value)
        except Exception as inner:
            return NodeInputError(
                f"{path}: input '{key}' ({type(value).__name__}) cannot be sent to a Ray "
                f"worker: {type(inner).__name__}: {inner}"
            )
    return NodeInputError(f"{path}: the item cannot be sent to a Ray worker: {exc}")
