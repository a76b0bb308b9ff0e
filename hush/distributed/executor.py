"""``RayExecutor``: a map's items run in Ray worker processes, everything else stays the same.

The driver keeps the run: it pulls items as the map's ``max_concurrency``
allows (so at most that many are in flight across the cluster, and a huge or
lazy input is never submitted whole), looks each up in the checkpoint, hands the
others to the workers (:mod:`hush.distributed.dispatch`) and on return commits
them. Events, budget holds (kept by the driver's
:class:`~hush.providers.spend.RunSpend`) and results stream back as they happen.
A worker that dies costs only the items it had in flight: it is replaced, its
limiter leases are returned, and its items are sent again up to
``max_item_retries`` times, then each is an item error.

Lifecycle: the executor connects to Ray on first use (:mod:`hush.distributed.cluster`;
never twice), creates the cluster's limiter actors (one per LLM resource) and
kills them at :meth:`RayExecutor.shutdown`, which also ends its calls in flight,
stops its workers and disconnects from Ray if the executor connected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

import ray

from hush.core.errors import NodeInputError
from hush.distributed import limits
from hush.distributed.cluster import connect
from hush.distributed.dispatch import Item, Worker, WorkerPool
from hush.distributed.shipping import Bodies, unshippable_input

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.plan import GraphPlan
    from hush.core.runtime import GraphOutcome
    from hush.providers.spend import RunSpend

logger = logging.getLogger(__name__)


class RayExecutor:
    """Runs map items on a Ray cluster (see the module docstring).

    ``address``: the cluster to join (default ``RAY_ADDRESS``, else a cluster started
    with ``ray start`` on this machine, else a local instance; ``"auto"`` joins or
    fails, ``"ray://host:10001"`` uses Ray Client); ``num_cpus``: CPUs of a local
    instance started by the executor; ``workers``: worker processes (default: the
    cluster's CPUs); ``items_per_worker``: items one worker runs at once on its event
    loop (1 suits CPU-bound bodies; raise it for bodies that mostly wait, such as LLM
    calls); ``cpus_per_worker``: the CPUs Ray reserves for each worker (0 for bodies
    that mostly wait); ``max_item_retries``: how often an item whose worker died is
    sent again; other keyword arguments go to ``ray.init``
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
        self._pool = WorkerPool(
            self._worker, self._cache, self._forget, max_item_retries, items_per_worker
        )
        self._bodies = Bodies(self._limiter)
        self._limiters: dict[str, Any] = {}
        self._caches: dict[str, Any] = {}

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Ray (or start it) and start the workers. Done on first use (blocking
        the event loop for the few seconds Ray takes to start); call it beforehand to
        start the cluster when you choose."""
        with self._lock:
            if self._pool.workers:
                return
            if not ray.is_initialized():
                connect(self.address, self.num_cpus, self.ray_init_options)
                self.started_ray = True
            count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            workers = [self._worker() for _ in range(count)]
            try:
                ray.get([w.handle.ping.remote() for w in workers], timeout=self.start_timeout)
            except ray.exceptions.GetTimeoutError:
                for worker in workers:
                    ray.kill(worker.handle)
                free = ray.available_resources().get("CPU", 0)
                raise RuntimeError(
                    f"RayExecutor: {count} workers of {self.cpus_per_worker:g} CPU each did not "
                    f"start within {self.start_timeout:g} s ({free:g} CPU free in the cluster); "
                    "use fewer workers, cpus_per_worker=0 for bodies that mostly wait, or shut "
                    "down the executors you no longer use"
                ) from None
            self._pool.workers = workers
            logger.info(
                "RayExecutor: %d workers on %s", count, ray.get_runtime_context().gcs_address
            )

    def shutdown(self) -> None:
        """End the calls in flight, stop the workers and the limiter actors; disconnect from
        Ray if this executor connected (a cluster you joined keeps running). Calls cancelled
        here end on their event loop's next turns, and Ray is disconnected after the last
        one: a call touching Ray after ``ray.shutdown`` ends the process with status 1."""
        with self._lock:
            workers = self._pool.workers
            ending = self._pool.close()
            if ray.is_initialized():
                for actor in [w.handle for w in workers] + [
                    *self._limiters.values(),
                    *self._caches.values(),
                ]:
                    ray.kill(actor)
            self._bodies.clear()
            self._limiters, self._caches = {}, {}
            if self.started_ray:
                self.started_ray = False
                _disconnect_after(ending)

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
        options = dict(state)
        self.__init__(  # type: ignore[misc]
            options.pop("address"),
            options.pop("num_cpus"),
            **options.pop("ray_init_options"),
            **options,
        )

    def __repr__(self) -> str:
        where = self.address or os.environ.get("RAY_ADDRESS") or "local"
        return f"RayExecutor({where!r}, workers={len(self._pool.workers) or self.workers})"

    def worker_pids(self) -> list[int]:
        """The process ids of the workers (for operators and tests)."""
        return list(ray.get([worker.handle.pid.remote() for worker in self._pool.workers]))

    # ---- running items ---------------------------------------------------------------

    async def run_body(
        self, call: NodeCall, plan: GraphPlan, path: str, state: dict[str, Any]
    ) -> GraphOutcome:
        """Run one item's body in a worker; return its outcome as a local run would."""
        from hush.providers import run_counters
        from hush.providers.spend import current

        if not self._pool.workers:
            self.start()
        body_id, body_ref = self._bodies.ship(call, plan)
        loop = asyncio.get_running_loop()
        run = call.run
        item = Item(
            path,
            state,
            body_id,
            body_ref,
            run.run_id,
            run.emit,
            current.get(),
            run_counters.current.get(),
            loop.create_future(),
        )
        self._pool.submit(item)
        try:
            return await item.future
        except NodeInputError as exc:
            raise NodeInputError(unshippable_input(path, state, exc)) from None
        except asyncio.CancelledError:
            item.future.cancel()
            self._pool.abandon(item)
            raise

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

    def _limiter(self, key: str, resource: Any) -> str:
        """The name of the cluster's limiter actor of ``key`` (created here, owned by the
        driver, killed at shutdown)."""
        name = limits.actor_name(self.scope, key, resource)
        if name not in self._limiters:
            self._limiters[name] = limits.create_limiter_actor(name, key, resource)
        return name

    def _forget(self, owner: str) -> None:
        """Return the limiter leases of the replaced worker ``owner``."""
        for actor in self._limiters.values():
            actor.forget.remote(owner)

    def _worker(self) -> Worker:
        from hush.distributed.worker import ItemRunner

        owner = uuid.uuid4().hex[:12]
        handle = ItemRunner.options(  # type: ignore[attr-defined]
            max_concurrency=1000, num_cpus=self.cpus_per_worker
        ).remote(owner, self.items_per_worker)
        return Worker(handle, owner)


def _disconnect_after(calls: list[asyncio.Task[None]]) -> None:
    """``ray.shutdown()`` once ``calls`` have ended (now if none is pending)."""
    pending = {call for call in calls if not call.done()}
    if not pending:
        if ray.is_initialized():
            ray.shutdown()
        return

    def ended(call: asyncio.Task[None]) -> None:
        pending.discard(call)
        if not pending and ray.is_initialized():
            ray.shutdown()

    for call in pending:
        call.add_done_callback(ended)
