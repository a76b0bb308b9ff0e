"""Maps on a Ray cluster started with ``ray start`` (2 CPUs, see conftest): the same results,
errors, checkpoints, traces and rate limits as in one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush  # noqa: E402
from hush.core.nodes.iteration import MapNode  # noqa: E402
from hush.distributed import RayExecutor  # noqa: E402
from hush.observability import MemoryTracer  # noqa: E402
from hush.providers import LLMNode, get_registry  # noqa: E402
from hush.testing import MockLLMConfig, MockLLMServer  # noqa: E402


def crunch(x: int) -> dict[str, Any]:
    """A few milliseconds of pure Python; items 3, 10, 17... fail."""
    if x % 7 == 3:
        raise ValueError(f"item {x} is bad")
    total = sum(i * i for i in range(20_000 + x))
    return {"y": total % 1009, "pid": os.getpid()}


def cpu_graph(executor: Any = None) -> GraphNode:
    with GraphNode(name="cpu") as graph:
        with MapNode(
            name="items", inputs={"x": Each(PARENT["xs"])}, max_concurrency=6, executor=executor
        ) as items:
            node = CodeNode(name="crunch", code_fn=crunch, inputs={"x": PARENT["x"]})
            node["y"] >> PARENT["y"]
            node["pid"] >> PARENT["pid"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        items["pid"] >> PARENT["pids"]
        items["error"] >> PARENT["errors"]
        START >> items >> END
    return graph


def described(errors: list[Any]) -> list[Any]:
    return [None if e is None else (e.node, e.type, e.message) for e in errors]


async def test_results_and_errors_match_a_local_run_and_items_ran_in_workers(
    executor: RayExecutor,
) -> None:
    xs = list(range(40))
    local = await Hush(cpu_graph()).run({"xs": xs})
    tracer = MemoryTracer()
    remote = await Hush(cpu_graph(executor)).run({"xs": xs}, tracer=tracer)
    assert remote["ys"] == local["ys"]
    assert described(remote["errors"]) == described(local["errors"])
    assert sum(e is not None for e in remote["errors"]) == 6
    workers = {pid for pid in remote["pids"] if pid is not None}
    assert os.getpid() not in workers and len(workers) == 2
    assert remote["$state"].iterations["cpu/items"].failed == 6
    items = {r["name"]: r for r in tracer.find(kind="item")}
    inner = tracer.find("crunch")
    assert len(items) == 40 and len(inner) == 40
    assert {r["parent_id"] for r in inner} == {r["id"] for r in items.values()}
    failed = [r for r in inner if r["level"] == "ERROR"]
    assert len(failed) == 6 and "is bad" in failed[0]["error"]


@pytest.mark.twice
async def test_a_run_joins_the_cluster_started_with_ray_start_through_ray_address(
    executor: RayExecutor, cluster: str
) -> None:
    assert executor.started_ray, "the executor connected (ray.init was not called before)"
    joined = ray.get_runtime_context().gcs_address
    assert joined.rsplit(":", 1)[1] == cluster.rsplit(":", 1)[1]
    assert ray.cluster_resources()["CPU"] == 2, "a second local Ray would have this host's CPUs"
    result = await Hush(cpu_graph(executor)).run({"xs": [1, 2, 4]})
    assert os.getpid() not in result["pids"] and None not in result["pids"]


def test_a_refused_auth_token_is_explained() -> None:
    from ray.exceptions import AuthenticationError

    from hush.distributed.cluster import connection_failure

    try:
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken: token is missing")
        except AuthenticationError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as exc:
        message = connection_failure("10.0.0.1:6379", exc)
    assert message.startswith("RayExecutor: the Ray cluster at 10.0.0.1:6379 uses token auth")
    assert "set RAY_AUTH_MODE=token" in message


def thread_name(x: int) -> dict[str, Any]:
    return {"name": threading.current_thread().name, "pid": os.getpid()}


async def test_sync_code_in_workers_runs_on_each_workers_own_thread_pool(
    executor: RayExecutor,
) -> None:
    """Not a thread per node: anyio would start and stop one for each (Ray's actor loop has
    no root task to keep them under)."""
    with GraphNode(name="threads") as graph:
        with MapNode(
            name="items", inputs={"x": Each(PARENT["xs"])}, max_concurrency=8, executor=executor
        ) as items:
            node = CodeNode(name="where", code_fn=thread_name, inputs={"x": PARENT["x"]})
            node["name"] >> PARENT["name"]
            node["pid"] >> PARENT["pid"]
            START >> node >> END
        items["name"] >> PARENT["names"]
        items["pid"] >> PARENT["pids"]
        START >> items >> END
    result = await Hush(graph).run({"xs": list(range(40))})
    assert all(name.startswith("hush-code") for name in result["names"]), set(result["names"])
    threads = set(zip(result["pids"], result["names"], strict=True))
    # A shared pool reuses idle threads, so it never holds more than the map's cap of
    # nodes at once; a thread per node would give one per item (40).
    assert len(threads) <= 8, threads


async def test_the_run_option_sets_the_executor_of_top_level_maps(executor: RayExecutor) -> None:
    result = await Hush(cpu_graph()).run({"xs": [1, 2]}, executor=executor)
    assert os.getpid() not in result["pids"]


class Locked:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, x: int) -> dict[str, Any]:
        return {"y": x}


async def test_unpicklable_code_and_inputs_are_named(executor: RayExecutor) -> None:
    with GraphNode(name="bad") as graph:
        with MapNode(name="items", inputs={"x": Each(PARENT["xs"])}, executor=executor) as items:
            node = CodeNode(name="locked", code_fn=Locked(), inputs={"x": PARENT["x"]})
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        START >> items >> END
    result = await Hush(graph).run({"xs": [1]})
    (error,) = result["$state"].errors
    assert "'items' cannot be sent to Ray workers" in error.message
    assert "node 'bad/items/locked': its code function" in error.message

    lock = threading.Lock()
    result = await Hush(cpu_graph(executor)).run({"xs": [1, lock]})
    (error,) = result["$state"].errors
    assert "input 'x' (lock) cannot be sent to a Ray worker" in error.message


def dies_once(x: int, marker: str) -> dict[str, Any]:
    """Kill this worker process the first time item 2 runs."""
    if x == 2 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return {"y": x * 10}


async def test_a_lost_workers_item_is_sent_again(executor: RayExecutor, tmp_path: Path) -> None:
    with GraphNode(name="lossy") as graph:
        with MapNode(
            name="items",
            inputs={"x": Each(PARENT["xs"]), "marker": str(tmp_path / "died")},
            executor=executor,
        ) as items:
            node = CodeNode(
                name="work",
                code_fn=dies_once,
                inputs={"x": PARENT["x"], "marker": PARENT["marker"]},
            )
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        items["error"] >> PARENT["errors"]
        START >> items >> END
    result = await Hush(graph).run({"xs": list(range(5))})
    assert (tmp_path / "died").exists()
    assert result["ys"] == [0, 10, 20, 30, 40]
    assert result["errors"] == [None] * 5


async def test_llm_calls_in_workers_share_one_cluster_limit(io_executor: RayExecutor) -> None:
    io_bound = io_executor
    async with MockLLMServer(MockLLMConfig(latency=0.02, rpm=1200, burst_seconds=0.5)) as server:
        get_registry().register(
            "llm:ray-shared",
            {"base_url": server.base_url, "model": "gpt-4o-mini", "rpm": 1200},
        )
        try:
            with GraphNode(name="llm") as graph:
                with MapNode(
                    name="asks",
                    inputs={"q": Each(PARENT["qs"])},
                    max_concurrency=32,
                    executor=io_bound,
                ) as asks:
                    llm = LLMNode(
                        name="llm",
                        resource_key="ray-shared",
                        inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                    )
                    llm["content"] >> PARENT["content"]
                    START >> llm >> END
                asks["content"] >> PARENT["answers"]
                asks["error"] >> PARENT["errors"]
                START >> asks >> END
            qs = [f"question {i}" for i in range(120)]
            result = await Hush(graph).run({"qs": qs})
        finally:
            get_registry().unregister("llm:ray-shared")
        assert result["errors"] == [None] * 120
        assert all(a and q in a for a, q in zip(result["answers"], qs, strict=True))
        statuses = server.status_counts
        assert statuses.get(429, 0) < 0.01 * sum(statuses.values()), statuses
        assert result["$state"].llm["llm:ray-shared"]["calls"] == 120


DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
    from hush.core.nodes.iteration import MapNode
    from hush.distributed import RayExecutor

    def slow(x, log):
        time.sleep(0.15)
        with open(log, "a") as f:
            f.write(f"{x}\\n")
        return {"y": x + 1000}

    log, db = sys.argv[1], sys.argv[2]
    with GraphNode(name="resumable") as graph:
        with MapNode(name="items", inputs={"x": Each(PARENT["xs"]), "log": log},
                     max_concurrency=4, executor=RayExecutor(items_per_worker=2, cpus_per_worker=0)) as items:
            node = CodeNode(name="slow", code_fn=slow, inputs={"x": PARENT["x"], "log": PARENT["log"]})
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        START >> items >> END
    result = Hush(graph).run_sync({"xs": list(range(40))}, checkpoint=db, run_id="ray-resume")
    assert result["ys"] == [x + 1000 for x in range(40)], result["ys"]
    print("resumed", result["$state"].iterations["resumable/items"].resumed, flush=True)
    """
)


def test_a_checkpointed_ray_map_resumes_after_the_driver_is_killed(
    executor: RayExecutor, cluster: str, tmp_path: Path
) -> None:
    log, db = tmp_path / "ran.log", tmp_path / "run.db"
    env = {**os.environ, "RAY_ADDRESS": cluster}
    args = [sys.executable, "-c", DRIVER, str(log), str(db)]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().split()) >= 12:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    ran_first = log.read_text().split()
    assert 12 <= len(ran_first) < 40

    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    resumed = int(second.stdout.split()[-1])
    ran = log.read_text().split()
    assert set(map(int, ran)) == set(range(40))
    assert resumed >= len(ran_first) - 4 - 4, "more than the items in flight were lost"
    assert len(ran) - 40 <= 8, f"{len(ran) - 40} items ran twice"


CLIENT_DRIVER = textwrap.dedent(
    """
    import os, sys
    from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
    from hush.core.nodes.iteration import MapNode
    from hush.distributed import RayExecutor

    def triple(x):
        if x == 4:
            raise ValueError("item 4 is bad")
        return {"y": x * 3, "pid": os.getpid()}

    with RayExecutor(sys.argv[1], workers=2, cpus_per_worker=0) as executor:
        with GraphNode(name="client") as graph:
            with MapNode(name="items", inputs={"x": Each(PARENT["xs"])}, max_concurrency=4,
                         executor=executor) as items:
                node = CodeNode(name="triple", code_fn=triple, inputs={"x": PARENT["x"]})
                node["y"] >> PARENT["y"]
                node["pid"] >> PARENT["pid"]
                START >> node >> END
            items["y"] >> PARENT["ys"]
            items["pid"] >> PARENT["pids"]
            items["error"] >> PARENT["errors"]
            START >> items >> END
        result = Hush(graph).run_sync({"xs": list(range(8))})
    assert result["ys"] == [0, 3, 6, 9, None, 15, 18, 21], result["ys"]
    assert [e is not None for e in result["errors"]] == [x == 4 for x in range(8)]
    assert result["errors"][4].message == "item 4 is bad", result["errors"][4]
    assert os.getpid() not in result["pids"], result["pids"]
    print("ok", flush=True)
    """
)


def test_a_driver_runs_maps_through_the_ray_client_address(client_address: str) -> None:
    args = [sys.executable, "-c", CLIENT_DRIVER, client_address]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and done.stdout.split()[-1:] == ["ok"], done.stderr[-2000:]


def test_without_ray_the_error_says_how_to_install_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None
        import hush.distributed
        try:
            hush.distributed.RayExecutor
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == (
        "RayExecutor needs Ray, which is not installed: pip install 'hush[ray]'"
    )
