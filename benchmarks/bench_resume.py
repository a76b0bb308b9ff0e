"""What a resume costs after rows were inserted: 10,000 items, then 1% new rows spread through.

Items are keyed by their content (the k-th item with a digest), so only the
inserted rows run again. Prints the re-runs over the items (target: about 1%,
that is, the inserted rows and nothing else) and the times of both runs.

    python benchmarks/bench_resume.py [--items 10000] [--inserted 0.01] [--duplicates 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


def engine(ran: list[int]) -> Hush:
    async def work(row: str) -> dict[str, str]:
        ran[0] += 1
        return {"answer": row.upper()}

    with GraphNode(name="resume") as g:
        with MapNode(name="rows", inputs={"row": Each(PARENT["rows"])}, max_concurrency=100) as m:
            node = CodeNode(name="work", code_fn=work, inputs={"row": PARENT["row"]})
            node["answer"] >> PARENT["answer"]
            START >> node >> END
        m["answer"] >> PARENT["answers"]
        START >> m >> END
    return Hush(g)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--inserted", type=float, default=0.01, help="share of rows inserted")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of repeated rows")
    args = parser.parse_args()
    rnd = random.Random(7)
    distinct = int(args.items * (1 - args.duplicates))
    rows = [f"row {i}" for i in range(distinct)]
    rows += [rnd.choice(rows) for _ in range(args.items - distinct)]
    rnd.shuffle(rows)
    inserted = max(1, int(args.items * args.inserted))
    changed = list(rows)
    for n in range(inserted):
        changed.insert(rnd.randrange(len(changed) + 1), f"new row {n}")

    ran = [0]
    hush = engine(ran)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "resume.db"
        started = time.perf_counter()
        first = await hush.run({"rows": rows}, checkpoint=db, run_id="r")
        first_s = time.perf_counter() - started
        ran[0] = 0
        started = time.perf_counter()
        second = await hush.run({"rows": changed}, checkpoint=db, run_id="r")
        second_s = time.perf_counter() - started
    assert second["answers"] == [row.upper() for row in changed]
    assert first["$state"].status == second["$state"].status == "ok"
    print(
        f"{args.items:,} items ({args.duplicates:.0%} repeated rows), then {inserted:,} rows "
        f"inserted at random places"
    )
    print(f"  first run      {first_s * 1e3:8.1f} ms   {args.items:,} items run")
    print(
        f"  resume         {second_s * 1e3:8.1f} ms   re-runs {ran[0]:,} / {len(changed):,} items "
        f"= {ran[0] / len(changed):.2%} (target: the {inserted / len(changed):.2%} inserted)"
    )


if __name__ == "__main__":
    asyncio.run(main())
