"""``RayExecutor``: a map's items run in Ray worker processes, everything else stays the same.

The driver keeps the run: it pulls items as the map's ``max_concurrency``
allows (so at most that many are in flight across the cluster, and a huge or
lazy input is never submitted whole), looks each up in the checkpoint, hands the
others to the least busy worker, and on return commits them. Items queued for
one worker while its calls are busy go together in its next call (at most two
calls in flight per worker), so small items share one round trip and large ones
still go one at a time. Each call streams back, as they happen, its items'
events (emitted by the driver for tracers, progress and ``engine.stream()``),
budget holds (kept by the driver's :class:`~hush.providers.spend.RunSpend`) and
results. A worker that dies costs only the items it had in flight: it is
replaced, its limiter leases are returned, and its items are sent again (to any
worker; every call carries the body's ref) up to ``max_item_retries`` times,
then each is an item error.

Lifecycle: the executor connects to Ray on first use: to the running Ray
instance if this process already called ``ray.init``, else to ``address`` (or
``RAY_ADDRESS``, or a cluster started with ``ray start`` on this machine), else
it starts a local instance with ``num_cpus``. It never calls ``ray.init`` twice.
It creates the cluster's limiter actors (one per LLM resource) and kills them at
:meth:`RayExecutor.shutdown`, which also stops its workers and disconnects from
Ray if the executor connected.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import pickle
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray import cloudpickle
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from hush.core.errors import NodeError, NodeInputError
from hush.core.runtime import GraphOutcome
from hush.distributed import limits
from hush.distributed.errors import item_error, lost_error

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.events import Event
    from hush.core.plan import GraphPlan
    from hush.distributed.budget import Message
    from hush.providers.spend import Hold, RunSpend

logger = logging.getLogger(__name__)

LOST_WORKER = (ActorDiedError, ActorUnavailableError, RayActorError)
CALLS_PER_WORKER = 2
"""Calls in flight per worker: one running, one queued behind it (no idle round trip)."""
MAX_BATCH = 64
"""Items in one call at most."""


@dataclass(eq=False)
class _Item:
    """One item waiting for, or running in, a worker."""

    path: str
    state: dict[str, Any]
    body_id: str
    body_ref: Any
    run_id: str
    emit: Any
    spend: RunSpend | None
    future: asyncio.Future[GraphOutcome]
    attempts: int = 0

    @property
    def batch_key(self) -> tuple[Any, ...]:
        return (self.body_id, self.run_id, id(self.emit), id(self.spend), self.future.get_loop())


@dataclass(eq=False)
class _Worker:
    """One worker actor and what the driver has queued for it."""

    handle: Any
    owner: str
    pending: list[_Item] = field(default_factory=list)
    calls: int = 0
    load: int = 0
    """Items queued or running in it."""
    kicked: bool = False


class RayExecutor:
    """Runs map items on a Ray cluster (see the module docstring).

    ``address``: the cluster to join (default ``RAY_ADDRESS``, else a cluster started
    with ``ray start`` on this machine, else a local instance; ``"auto"`` joins or
    fails, ``"ray://host:10001"`` uses Ray Client); ``num_cpus``: CPUs of a local
    instance started by the executor; ``workers``: worker processes (default: the
    cluster's CPUs); ``items_per_worker``: items one worker runs at once on its event
    loop (1 suits CPU-bound bodies; raise it for bodies that mostly wait, such as LLM
    calls); ``cpus_per_worker``: the CPUs Ray reserves for each worker (0 for bodies
    that mostly wait); other keyword arguments go to ``ray.init``
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
        """Whether this executor called ``ray.init`` (and so disconnects at shutdown)."""
        self.scope = uuid.uuid4().hex[:12]
        """Names this executor's limiter actors."""
        self._lock = threading.Lock()
        self._pool: list[_Worker] = []
        self._bodies: dict[int, tuple[GraphPlan, str, Any]] = {}
        self._limiters: dict[str, Any] = {}
        self._caches: dict[str, Any] = {}

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Ray (or start it) and start the workers. Done on first use (blocking
        the event loop for the few seconds Ray takes to start); call it beforehand to
        start the cluster when you choose."""
        with self._lock:
            if self._pool:
                return
            if not ray.is_initialized():
                self._connect()
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            self._pool = [self._worker() for _ in range(count)]
            try:
                ray.get(
                    [worker.handle.ping.remote() for worker in self._pool],
                    timeout=self.start_timeout,
                )
            except ray.exceptions.GetTimeoutError:
                for worker in self._pool:
                    ray.kill(worker.handle)
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

    def _connect(self) -> None:
        """``ray.init`` the Ray way: the address given, else ``RAY_ADDRESS``, else a cluster
        started with ``ray start`` here, else a new local instance of ``num_cpus``."""
        options = dict(self.ray_init_options)
        options.setdefault("log_to_driver", False)
        options.setdefault("logging_level", logging.ERROR)
        options["runtime_env"] = _with_driver_path(options.get("runtime_env"))
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address is None and _local_cluster():
            address = "auto"
        _honour_auth_mode()
        if address is None or address == "local":
            options["num_cpus"] = self.num_cpus
            options.setdefault("include_dashboard", False)
        elif self.num_cpus is not None:
            logger.warning("RayExecutor: num_cpus=%s ignored: joining %s", self.num_cpus, address)
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:
            raise ConnectionError(_connection_failure(address, exc)) from exc
        self.started_ray = True

    def shutdown(self) -> None:
        """Stop the workers and the limiter actors; disconnect from Ray if this executor
        connected (a cluster you joined keeps running)."""
        with self._lock:
            for worker in self._pool:
                ray.kill(worker.handle)
            for actor in [*self._limiters.values(), *self._caches.values()]:
                ray.kill(actor)
            self._pool, self._bodies, self._limiters, self._caches = [], {}, {}, {}
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

    def worker_pids(self) -> list[int]:
        """The process ids of the workers (for operators and tests)."""
        return list(ray.get([worker.handle.pid.remote() for worker in self._pool]))

    # ---- running items ---------------------------------------------------------------

    async def run_body(
        self, call: NodeCall, plan: GraphPlan, path: str, state: dict[str, Any]
    ) -> GraphOutcome:
        """Run one item's body in a worker; return its outcome as a local run would."""
        from hush.providers.spend import current

        if not self._pool:
            self.start()
        body_id, body_ref = self._body(call, plan)
        item = _Item(
            path,
            state,
            body_id,
            body_ref,
            call.run.run_id,
            call.run.emit,
            current.get(),
            asyncio.get_running_loop().create_future(),
        )
        self._queue(item)
        try:
            return await item.future
        except NodeInputError as exc:
            raise NodeInputError(_unshippable_input(path, state, exc)) from None

    def _queue(self, item: _Item) -> None:
        worker = min(self._pool, key=lambda w: w.load)
        worker.pending.append(item)
        worker.load += 1
        self._kick(worker)

    def _kick(self, worker: _Worker) -> None:
        """Send the worker's pending items at the end of this turn of the event loop (so
        that items queued in the same turn go in one call)."""
        if worker.pending and worker.calls < CALLS_PER_WORKER and not worker.kicked:
            worker.kicked = True
            worker.pending[0].future.get_loop().call_soon(self._dispatch, worker)

    def _dispatch(self, worker: _Worker) -> None:
        worker.kicked = False
        if worker not in self._pool:
            for item in worker.pending:
                self._retry(item, None)
            worker.pending.clear()
            return
        while worker.pending and worker.calls < CALLS_PER_WORKER:
            cancelled = [item for item in worker.pending if item.future.done()]
            worker.load -= len(cancelled)
            worker.pending = [item for item in worker.pending if not item.future.done()]
            if not worker.pending:
                return
            key = worker.pending[0].batch_key
            batch = [item for item in worker.pending if item.batch_key == key][:MAX_BATCH]
            taken = set(map(id, batch))
            worker.pending = [item for item in worker.pending if id(item) not in taken]
            worker.calls += 1
            batch[0].future.get_loop().create_task(self._call(worker, batch))

    async def _call(self, worker: _Worker, batch: list[_Item]) -> None:
        """One call of ``worker`` running ``batch``; its holds, requests and leftovers end
        in its one ``finally``."""
        first = batch[0]
        undone = dict(enumerate(batch))
        holds: dict[int, Hold] = {}
        asking: set[asyncio.Task[None]] = set()
        lost: BaseException | None = None
        try:
            items = [(n, item.path, item.state) for n, item in undone.items()]
            try:
                stream = worker.handle.run.remote(
                    first.body_id,
                    [first.body_ref],
                    items,
                    first.run_id,
                    first.emit is not None,
                    first.spend is not None,
                    self._cache(first.spend),
                )
            except (TypeError, ValueError, pickle.PicklingError) as exc:
                for number, item in list(undone.items()):
                    if not _picklable(item.state):
                        undone.pop(number).future.set_exception(NodeInputError(str(exc)))
                        worker.load -= 1
                return
            async for ref in stream:
                messages: list[Message] = await ref
                for message in messages:
                    self._receive(message, worker, first, undone, holds, asking)
        except LOST_WORKER as exc:
            lost = exc
            logger.warning(
                "a Ray worker was lost (%s); sending its %d items again", exc, len(undone)
            )
            self._replace(worker)
        except Exception as exc:
            for item in undone.values():
                if not item.future.done():
                    item.future.set_result(_failed(item_error(item.path, exc)))
            worker.load -= len(undone)
            undone.clear()
        finally:
            for task in asking:
                task.cancel()
            for hold in holds.values():
                hold.settle(None)
            worker.calls -= 1
            worker.load -= len(undone)
            for item in undone.values():
                self._retry(item, lost)
            self._kick(worker)

    def _receive(
        self,
        message: Message,
        worker: _Worker,
        first: _Item,
        undone: dict[int, _Item],
        holds: dict[int, Hold],
        asking: set[asyncio.Task[None]],
    ) -> None:
        kind = message[0]
        if kind == "event":
            if first.emit is not None:
                event: Event = message[2]
                first.emit(event)
        elif kind == "done":
            _, number, written, error, errors, unhandled = message
            item = undone.pop(number)
            worker.load -= 1
            if not item.future.done():
                item.future.set_result(GraphOutcome(written, error, errors, unhandled, []))
        elif kind == "reserve" and first.spend is not None:
            task = asyncio.ensure_future(_reserve(first.spend, worker, holds, message))
            asking.add(task)
            task.add_done_callback(asking.discard)
        elif kind == "settle":
            hold = holds.pop(message[1], None)
            if hold is not None:
                hold.settle(message[2], message[3])
        elif kind == "cached" and first.spend is not None:
            first.spend.answered_from_cache(message[1], message[2])
        elif kind == "cache_put" and first.spend is not None and first.spend.cache is not None:
            first.spend.cache.put(message[1], message[2], message[3])

    def _cache(self, spend: RunSpend | None) -> Any:
        """The cache actor reading the run's response cache file (started once per file,
        on this node; killed at shutdown), or ``None``."""
        if spend is None or spend.cache is None:
            return None
        path = str(spend.cache.path)
        actor = self._caches.get(path)
        if actor is None:
            from hush.distributed.cache import start_cache_actor

            actor = self._caches[path] = start_cache_actor(path, spend.cache.store_incomplete)
        return actor

    def _retry(self, item: _Item, lost: BaseException | None) -> None:
        """Send an item of a lost worker again, or fail it after ``max_item_retries``."""
        if item.future.done():
            return
        if lost is not None:
            item.attempts += 1
            if item.attempts > self.max_item_retries:
                item.future.set_result(_failed(lost_error(item.path, item.attempts, lost)))
                return
        self._queue(item)

    def _body(self, call: NodeCall, plan: GraphPlan) -> tuple[str, Any]:
        """The body's id and object ref: put in the object store once per plan (the plan is
        kept, so its ``id`` is not reused by another while the executor lives), with the
        driver's LLM resources and the names of their limiter actors."""
        found = self._bodies.get(id(plan))
        if found is None or found[0] is not plan:
            try:
                cloudpickle.dumps(plan)
            except Exception as exc:
                raise _unshippable_body(call, plan, exc) from None
            resources = _llm_resources()
            names = {key: self._limiter(key, resource) for key, resource in resources.items()}
            found = (plan, uuid.uuid4().hex, ray.put((plan, resources, names)))
            self._bodies[id(plan)] = found
        return found[1], found[2]

    def _limiter(self, key: str, resource: Any) -> str:
        """The name of the cluster's limiter actor of ``key`` (created here, owned by the
        driver, killed at shutdown)."""
        name = limits.actor_name(self.scope, key, resource)
        if name not in self._limiters:
            self._limiters[name] = limits.create_limiter_actor(name, key, resource)
        return name

    def _worker(self) -> _Worker:
        from hush.distributed.worker import ItemRunner

        owner = uuid.uuid4().hex[:12]
        handle = ItemRunner.options(  # type: ignore[attr-defined]
            max_concurrency=1000, num_cpus=self.cpus_per_worker
        ).remote(owner, self.items_per_worker)
        return _Worker(handle, owner)

    def _replace(self, lost: _Worker) -> None:
        """Replace a lost worker and return its limiter leases."""
        if lost not in self._pool:
            return
        index = self._pool.index(lost)
        self._pool[index] = fresh = self._worker()
        fresh.pending, lost.pending = lost.pending, []
        fresh.load += len(fresh.pending)
        lost.load -= len(fresh.pending)
        ray.kill(lost.handle)
        for actor in self._limiters.values():
            actor.forget.remote(lost.owner)
        self._kick(fresh)


async def _reserve(
    spend: RunSpend, worker: _Worker, holds: dict[int, Hold], message: Message
) -> None:
    """Hold the driver's budget for a worker's request; answer it with the refusal or None."""
    from hush.providers.errors import BudgetExceededError

    _, number, key, price, prompt_tokens, max_tokens = message
    try:
        hold = await spend.reserve(key, price, prompt_tokens, max_tokens)
    except BudgetExceededError as exc:
        worker.handle.answer.remote(number, (number, str(exc)))
        return
    holds[number] = hold
    worker.handle.answer.remote(number, (number, None))


def _failed(error: NodeError) -> GraphOutcome:
    return GraphOutcome({}, error, [error], [error], [])


def _local_cluster() -> bool:
    """Whether a cluster started with ``ray start`` runs on this machine."""
    try:
        from ray._private.services import find_gcs_addresses

        return bool(find_gcs_addresses())
    except Exception:
        return False


def _honour_auth_mode() -> None:
    """Make Ray see ``RAY_AUTH_MODE`` even when it was set after ``import ray`` (Ray reads
    its configuration at import; this is how Ray itself turns token mode on)."""
    if os.environ.get("RAY_AUTH_MODE"):
        try:
            importlib.import_module("ray._raylet").Config.initialize("")
        except Exception as exc:
            logger.debug("RAY_AUTH_MODE could not be refreshed: %s", exc)


def _connection_failure(address: str | None, exc: ConnectionError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if "InvalidAuthToken" in str(cause) or type(cause).__name__ == "AuthenticationError":
            return (
                f"RayExecutor: the Ray cluster at {address} uses token authentication: set "
                "RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token, "
                "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (see `ray get-auth-token`)"
            )
        cause = cause.__cause__
    return f"RayExecutor: cannot connect to the Ray cluster at {address}: {exc}"


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


def _picklable(value: Any) -> bool:
    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


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


def _unshippable_input(path: str, state: dict[str, Any], exc: Exception) -> str:
    """Name the item input that cannot be pickled."""
    for key, value in state.items():
        try:
            cloudpickle.dumps(value)
        except Exception as inner:
            return (
                f"{path}: input '{key}' ({type(value).__name__}) cannot be sent to a Ray "
                f"worker: {type(inner).__name__}: {inner}"
            )
    return f"{path}: the item cannot be sent to a Ray worker: {exc}"
