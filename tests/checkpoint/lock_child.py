"""Child process for the run-lock tests: runs one checkpointed map, holding it or not.

python lock_child.py DB RUN_ID hold|finish

``hold`` prints ``running <pid>`` once its first item runs, then waits forever (the
test kills it); ``finish`` runs to the end and prints ``done <status> <saved>``. A run
refused because another process holds it prints ``refused <message>`` and exits 3.
"""

from __future__ import annotations

import asyncio
import os
import sys

from hush.checkpoint import RunLockedError
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


async def main(db: str, run_id: str, mode: str) -> None:
    async def work(item: int) -> dict[str, int]:
        if mode == "hold":
            print(f"running {os.getpid()}", flush=True)
            await asyncio.Event().wait()
        return {"r": item * 2}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=1) as m:
            w = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
            w["r"] >> PARENT["r"]
            START >> w >> END
        m["r"] >> PARENT["rs"]
        START >> m >> END
    try:
        result = await Hush(g).run({"items": [1, 2, 3]}, checkpoint=db, run_id=run_id)
    except RunLockedError as exc:
        print(f"refused {exc}", flush=True)
        sys.exit(3)
    print(f"done {result['$state'].status} {result['rs']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
