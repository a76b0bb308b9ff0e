"""A CPU-bound map on Ray: the same graph, its items in worker processes.

Each item parses and scores a document in pure Python (no I/O), the kind of
work one asyncio process cannot spread over several cores. The map runs once
in this process and once with ``RayExecutor`` (the cluster of ``RAY_ADDRESS`` or
of ``ray start`` on this machine if there is one, else a local Ray instance on 2
CPUs, started here and shut down at the end); the results and the failed items
are the same, the Ray run uses the cluster's cores.

    pip install 'hush[ray]'
    python examples/ray_map.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, MapNode
from hush.distributed import RayExecutor


def score(doc: str) -> dict[str, Any]:
    """Word statistics of a generated document; documents mentioning 'corrupt' fail."""
    if "corrupt" in doc:
        raise ValueError("corrupt document")
    words = doc.split() * 400
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    top = max(counts, key=lambda w: (counts[w], w))
    return {"top": top, "distinct": len(counts), "pid": os.getpid()}


def build(executor: RayExecutor | None = None) -> GraphNode:
    with GraphNode(name="documents") as graph:
        with MapNode(
            name="scored",
            inputs={"doc": Each(PARENT["docs"])},
            max_concurrency=8,
            executor=executor,
        ) as scored:
            node = CodeNode(name="score", code_fn=score, inputs={"doc": PARENT["doc"]})
            for key in ("top", "distinct", "pid"):
                node[key] >> PARENT[key]
            START >> node >> END
        for key in ("top", "distinct", "pid", "error"):
            scored[key] >> PARENT[key + "s"]
        START >> scored >> END
    return graph


def documents(n: int) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    docs = [
        " ".join(words[(i + j * j) % len(words)] + str(j % 50) for j in range(300))
        for i in range(n)
    ]
    docs[7] += " corrupt"
    return docs


async def main() -> None:
    docs = documents(60)
    started = time.perf_counter()
    local = await Hush(build()).run({"docs": docs})
    local_s = time.perf_counter() - started
    with RayExecutor(num_cpus=2) as executor:
        executor.start()
        started = time.perf_counter()
        remote = await Hush(build(executor)).run({"docs": docs})
        ray_s = time.perf_counter() - started
    same = remote["tops"] == local["tops"] and remote["distincts"] == local["distincts"]
    failed = [i for i, e in enumerate(remote["errors"]) if e is not None]
    workers = {pid for pid in remote["pids"] if pid is not None}
    print(f"local: {local_s:.2f}s in process {os.getpid()}")
    print(f"ray:   {ray_s:.2f}s in worker processes {sorted(workers)}")
    print(f"same results: {same}; failed items: {failed} ({remote['errors'][failed[0]].message})")


if __name__ == "__main__":
    asyncio.run(main())
