"""Embedding throughput for 10,000 texts at the resource's rate limit, with and without batching.

The local server runs in a process of its own, answering each request in 20 ms
and enforcing the same requests-per-minute limit the resource is configured
with (6,000/min by default). One ``EmbeddingNode`` embeds every text:

a  batch_size 1     one request per text: bound by the limit (10,000 requests)
b  batch_size 100   100 texts per request (100 requests)
c  batch_size 1000  (10 requests)

For each: wall time, texts per second, requests per second as a share of the
limit, 429s the server answered, and the speed-up over (a).

    python benchmarks/bench_embedding.py [--texts N] [--rpm N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import ServerProcess

from hush.core import END, PARENT, START, GraphNode, Hush
from hush.providers import EmbeddingNode, get_registry


def graph(resource: str) -> GraphNode:
    with GraphNode(name="embed-all") as g:
        node = EmbeddingNode(
            name="embed",
            resource_key=resource,
            inputs={"texts": PARENT["texts"]},
            outputs={"embeddings": PARENT},
        )
        START >> node >> END
    return g


async def measure(
    server: ServerProcess, texts: list[str], rpm: int, batch_size: int
) -> tuple[float, int, int]:
    """Seconds to embed ``texts``, requests the server got, and its 429s."""
    name = f"bench-{batch_size}"
    get_registry().register(
        f"embedding:{name}",
        {"base_url": server.base_url, "model": "mock-embed", "rpm": rpm, "batch_size": batch_size},
    )
    server.reset()
    started = time.perf_counter()
    result = await Hush(graph(name)).run({"texts": texts})
    seconds = time.perf_counter() - started
    assert result["$state"].errors == [], result["$state"].errors
    assert len(result["embeddings"]) == len(texts)
    records = server.requests
    return seconds, len(records), sum(1 for r in records if r.status == 429)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--rpm", type=int, default=6_000)
    args = parser.parse_args()
    texts = [f"passage {i}: some words about topic {i % 97} and more" for i in range(args.texts)]
    server = ServerProcess(latency=0.02, rpm=args.rpm, burst_seconds=1.0)
    print(f"{args.texts} texts, limit {args.rpm} requests/min, 20 ms per request")
    try:
        baseline = None
        for batch_size in (1, 100, 1000):
            seconds, requests, refused = await measure(server, texts, args.rpm, batch_size)
            share = requests / seconds / (args.rpm / 60)
            speedup = "" if baseline is None else f"   x{baseline / seconds:7.1f} vs batch_size 1"
            baseline = baseline or seconds
            print(
                f"batch_size {batch_size:>5}: {seconds:8.2f} s  {args.texts / seconds:9.0f} texts/s"
                f"  {requests:6d} requests ({share:5.1%} of the limit)  {refused} x 429{speedup}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
