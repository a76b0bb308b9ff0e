"""Parallel extract, sequential transform, parallel load; one source fails and a handler covers it.

python examples/etl_parallel.py
"""

from __future__ import annotations

import asyncio
import time

from hush import END, PARENT, START, CodeNode, GraphNode, Hush


def fetch_db() -> dict[str, list[int]]:
    time.sleep(0.2)
    return {"data": [1, 2, 3]}


async def fetch_api() -> dict[str, list[int]]:
    await asyncio.sleep(0.2)
    return {"data": [4, 5]}


def fetch_file() -> dict[str, list[int]]:
    raise FileNotFoundError("exports/today.csv")


with GraphNode(name="etl") as graph:
    db = CodeNode(name="extract_db", code_fn=fetch_db, inputs={})
    api = CodeNode(name="extract_api", code_fn=fetch_api, inputs={}, retry=3, timeout=5)
    file = CodeNode(name="extract_file", code_fn=fetch_file, inputs={})
    file_fallback = CodeNode(
        name="file_fallback",
        code_fn=lambda data, error: {"data": data if error is None else []},
        inputs={"data": file["data"], "error": file["error"]},
    )
    combine = CodeNode(
        name="combine",
        code_fn=lambda a, b, c: {"rows": a + b + c},
        inputs={"a": db["data"], "b": api["data"], "c": file_fallback["data"]},
    )
    load = CodeNode(
        name="load",
        code_fn=lambda rows: {"loaded": len(rows), "total": sum(rows)},
        inputs={"rows": combine["rows"]},
        outputs={"*": PARENT},
    )
    START >> [db, api, file]
    file >> file_fallback
    [db, api, file_fallback] >> combine >> load >> END


async def main() -> None:
    result = await Hush(graph).run()
    state = result["$state"]
    print(f"loaded {result['loaded']} rows, total {result['total']} in {state.duration:.2f}s")
    for path in state.order:
        node = state.nodes[path]
        print(f"  {path:<20} {node.status:<8} {node.error or ''}")
    print(graph.to_mermaid())


if __name__ == "__main__":
    asyncio.run(main())
