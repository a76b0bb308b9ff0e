"""Embedding throughput at the resource's rate limit, with and without batching.

The local server runs in a process of its own, answering each request in 20 ms
and enforcing the same requests-per-minute limit the resource is configured
with (6,000/min by default). One ``EmbeddingNode`` embeds every text (2,000 by
default):

a  batch_size 1     one request per text: bound by the limit (2,000 requests)
b  batch_size 100   100 texts per request (20 requests)
c  batch_size 1000  (2 requests)

Every run embeds the same texts at each batch size in turn. For each: wall
time, texts per second, requests per second as a share of the limit, 429s the
server answered, and the speed-up over (a) within the same run, each as
min–max over ``--runs`` runs.

    python benchmarks/bench_embedding.py [--texts 2000] [--rpm 6000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ratios, spread
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


SIZES = (1, 100, 1000)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--rpm", type=int, default=6_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    texts = [f"passage {i}: some words about topic {i % 97} and more" for i in range(args.texts)]
    server = ServerProcess(latency=0.02, rpm=args.rpm, burst_seconds=1.0)
    seconds: dict[int, list[float]] = {size: [] for size in SIZES}
    shares: dict[int, list[float]] = {size: [] for size in SIZES}
    sent: dict[int, int] = {}
    refused: dict[int, int] = dict.fromkeys(SIZES, 0)
    try:
        for _ in range(args.runs):
            for size in SIZES:
                took, requests, too_many = await measure(server, texts, args.rpm, size)
                seconds[size].append(took)
                shares[size].append(100 * requests / took / (args.rpm / 60))
                sent[size] = requests
                refused[size] += too_many
    finally:
        server.stop()
    print(
        f"{args.texts:,} texts, limit {args.rpm:,} requests/min, 20 ms per request;"
        f" min–max over {args.runs} runs, the batch sizes taking turns in each run"
    )
    for size in SIZES:
        speedup = ratios(seconds[1], seconds[size])
        print(
            f"batch_size {size:>5}: {spread(seconds[size], unit=' s')}"
            f"  {spread([args.texts / t for t in seconds[size]], '{:,.0f}', ' texts/s')}"
            f"  {sent[size]} requests ({spread(shares[size], '{:.0f}', '%')} of the limit)"
            f"  {refused[size]} x 429 in all runs  x{spread(speedup, '{:.1f}')} vs batch_size 1"
        )


if __name__ == "__main__":
    asyncio.run(main())
