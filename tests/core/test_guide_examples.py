"""The code of the parallel-execution guide, run as written (CodeNode/GraphNode/MapNode parts)."""

from __future__ import annotations

import asyncio

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


async def test_basic_list_syntax() -> None:
    with GraphNode(name="parallel-demo") as graph:
        prepare = CodeNode(
            name="prepare", code_fn=lambda x: {"value": x}, inputs={"x": PARENT["x"]}
        )
        branch_a = CodeNode(
            name="branch_a", code_fn=lambda x: {"result": x * 2}, inputs={"x": prepare["value"]}
        )
        branch_b = CodeNode(
            name="branch_b", code_fn=lambda x: {"result": x * 3}, inputs={"x": prepare["value"]}
        )
        merge = CodeNode(
            name="merge",
            code_fn=lambda a, b: {"total": a + b},
            inputs={"a": branch_a["result"], "b": branch_b["result"]},
            outputs={"*": PARENT},
        )
        START >> prepare >> [branch_a, branch_b] >> merge >> END

    result = await Hush(graph).run(inputs={"x": 10})
    assert result["total"] == 50
    assert set(result["$state"].nodes) == {
        "parallel-demo/prepare",
        "parallel-demo/branch_a",
        "parallel-demo/branch_b",
        "parallel-demo/merge",
    }


async def test_multiple_parallel_groups() -> None:
    seen: list[str] = []

    def make(name: str) -> CodeNode:
        return CodeNode(name=name, code_fn=lambda: seen.append(name) or {}, inputs={})

    with GraphNode(name="multi-parallel") as graph:
        task_a1, task_a2, task_a3 = make("a1"), make("a2"), make("a3")
        middle_step = make("middle")
        task_b1, task_b2 = make("b1"), make("b2")
        START >> [task_a1, task_a2, task_a3]
        [task_a1, task_a2, task_a3] >> middle_step
        middle_step >> [task_b1, task_b2]
        [task_b1, task_b2] >> END

    await Hush(graph).run()
    assert set(seen[:3]) == {"a1", "a2", "a3"}
    assert seen[3] == "middle"
    assert set(seen[4:]) == {"b1", "b2"}


def transform_1(items: list[int]) -> int:
    return sum(items)


def transform_2(items: list[int]) -> int:
    return max(items)


def transform_3(items: list[int]) -> int:
    return len(items)


def combine_results(r1: int, r2: int, r3: int) -> list[int]:
    return [r1, r2, r3]


async def test_classic_fan_out_fan_in() -> None:
    with GraphNode(name="fan-out-fan-in") as graph:
        source = CodeNode(
            name="source", code_fn=lambda data: {"items": data}, inputs={"data": PARENT["data"]}
        )
        process_1 = CodeNode(
            name="process_1",
            code_fn=lambda items: {"result": transform_1(items)},
            inputs={"items": source["items"]},
        )
        process_2 = CodeNode(
            name="process_2",
            code_fn=lambda items: {"result": transform_2(items)},
            inputs={"items": source["items"]},
        )
        process_3 = CodeNode(
            name="process_3",
            code_fn=lambda items: {"result": transform_3(items)},
            inputs={"items": source["items"]},
        )
        aggregate = CodeNode(
            name="aggregate",
            code_fn=lambda r1, r2, r3: {"combined": combine_results(r1, r2, r3)},
            inputs={
                "r1": process_1["result"],
                "r2": process_2["result"],
                "r3": process_3["result"],
            },
            outputs={"*": PARENT},
        )
        START >> source >> [process_1, process_2, process_3] >> aggregate >> END

    result = await Hush(graph).run(inputs={"data": [3, 9, 4]})
    assert result["combined"] == [16, 9, 3]


def transform(item: int) -> int:
    return item * item


async def test_dynamic_fan_out_with_map_node() -> None:
    with GraphNode(name="dynamic-fanout") as graph:
        with MapNode(
            name="parallel_process", inputs={"item": Each(PARENT["items"])}, max_concurrency=10
        ) as map_node:
            process = CodeNode(
                name="process",
                code_fn=lambda item: {"result": transform(item)},
                inputs={"item": PARENT["item"]},
            )
            process["result"] >> PARENT["result"]
            START >> process >> END

        map_node["result"] >> PARENT["results"]
        START >> map_node >> END

    result = await Hush(graph).run(inputs={"items": [1, 2, 3, 4, 5]})
    assert result["results"] == [1, 4, 9, 16, 25]


async def test_controlled_parallel_max_concurrency() -> None:
    with GraphNode(name="g") as graph:
        with MapNode(
            name="controlled_parallel", inputs={"item": Each(PARENT["items"])}, max_concurrency=5
        ) as map_node:
            node = CodeNode(
                name="n", code_fn=lambda item: {"r": item}, inputs={"item": PARENT["item"]}
            )
            node["r"] >> PARENT["r"]
            START >> node >> END
        map_node["r"] >> PARENT["rs"]
        START >> map_node >> END
    result = await Hush(graph).run(inputs={"items": list(range(12))})
    assert result["rs"] == list(range(12))


async def test_rate_limiting_with_semaphore_in_async_code_fn() -> None:
    _semaphore = asyncio.Semaphore(10)
    inside = 0
    peak = 0

    async def api_call(data: int) -> dict[str, int]:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.001)
        inside -= 1
        return {"value": data + 1}

    async def rate_limited_call(data: int) -> dict[str, int]:
        async with _semaphore:
            return await api_call(data)

    with GraphNode(name="g") as graph:
        with MapNode(name="m", inputs={"data": Each(PARENT["items"])}, max_concurrency=50) as m:
            node = CodeNode(
                name="rate_limited", code_fn=rate_limited_call, inputs={"data": PARENT["data"]}
            )
            node["value"] >> PARENT["value"]
            START >> node >> END
        m["value"] >> PARENT["values"]
        START >> m >> END

    result = await Hush(graph).run(inputs={"items": list(range(60))})
    assert result["values"] == list(range(1, 61))
    assert peak == 10


def safe_process(item: int) -> dict[str, int]:
    if item % 3 == 0:
        raise ValueError(f"bad item {item}")
    return {"result": item * 10}


async def test_partial_failure_handling() -> None:
    with GraphNode(name="partial-failure") as graph:
        with MapNode(
            name="parallel_process", inputs={"item": Each(PARENT["items"])}, max_concurrency=10
        ) as map_node:
            process = CodeNode(
                name="process",
                code_fn=lambda item: safe_process(item),
                inputs={"item": PARENT["item"]},
            )
            process["result"] >> PARENT["result"]
            process["error"] >> PARENT["error"]
            START >> process >> END

        filter_results = CodeNode(
            name="filter",
            code_fn=lambda results, errors: {
                "successful": [r for r, e in zip(results, errors, strict=True) if e is None],
                "failed": [e for e in errors if e is not None],
            },
            inputs={"results": map_node["result"], "errors": map_node["error"]},
            outputs={"*": PARENT},
        )
        START >> map_node >> filter_results >> END

    result = await Hush(graph).run(inputs={"items": [1, 2, 3, 4, 5, 6]})
    assert result["successful"] == [10, 20, 40, 50]
    assert [e.message for e in result["failed"]] == ["bad item 3", "bad item 6"]
    assert all(e.type == "ValueError" for e in result["failed"])


def test_fail_fast_pattern_is_plain_python() -> None:
    def process_single(item: int) -> dict[str, object]:
        return {"critical_error": item == 2, "error": "boom" if item == 2 else None}

    def process_with_early_exit(items: list[int]) -> dict[str, object]:
        results = []
        for item in items:
            result = process_single(item)
            if result.get("critical_error"):
                return {"results": results, "error": result["error"], "stopped_early": True}
            results.append(result)
        return {"results": results, "error": None, "stopped_early": False}

    assert process_with_early_exit([1, 2, 3])["stopped_early"] is True


async def test_batched_map_from_performance_section() -> None:
    batches = [[1, 2], [3, 4], [5]]
    with GraphNode(name="g") as graph:
        with MapNode(
            name="batched", inputs={"batch": Each(batches)}, max_concurrency=10
        ) as map_node:
            process_batch = CodeNode(
                name="process_batch",
                code_fn=lambda batch: {"sum": sum(batch)},
                inputs={"batch": PARENT["batch"]},
            )
            process_batch["sum"] >> PARENT["sum"]
            START >> process_batch >> END
        map_node["sum"] >> PARENT["sums"]
        START >> map_node >> END
    result = await Hush(graph).run()
    assert result["sums"] == [3, 7, 5]


async def test_etl_pipeline() -> None:
    loaded: dict[str, object] = {}

    def fetch_from_db() -> list[int]:
        return [1, 2]

    def fetch_from_api() -> list[int]:
        return [3]

    def read_from_file() -> list[int]:
        return [4, 5]

    def merge_data(db: list[int], api: list[int], file: list[int]) -> list[int]:
        return db + api + file

    def transform_data(data: list[int]) -> list[int]:
        return [x * 10 for x in data]

    def load_to_warehouse(data: list[int]) -> str:
        loaded["warehouse"] = data
        return "ok"

    def update_cache(data: list[int]) -> str:
        loaded["cache"] = data
        return "ok"

    with GraphNode(name="etl-pipeline") as graph:
        extract_db = CodeNode(
            name="extract_db", code_fn=lambda: {"data": fetch_from_db()}, inputs={}
        )
        extract_api = CodeNode(
            name="extract_api", code_fn=lambda: {"data": fetch_from_api()}, inputs={}
        )
        extract_file = CodeNode(
            name="extract_file", code_fn=lambda: {"data": read_from_file()}, inputs={}
        )
        combine = CodeNode(
            name="combine",
            code_fn=lambda db, api, file: {"combined": merge_data(db, api, file)},
            inputs={
                "db": extract_db["data"],
                "api": extract_api["data"],
                "file": extract_file["data"],
            },
        )
        transform = CodeNode(
            name="transform",
            code_fn=lambda data: {"transformed": transform_data(data)},
            inputs={"data": combine["combined"]},
        )
        load_warehouse = CodeNode(
            name="load_warehouse",
            code_fn=lambda data: {"status": load_to_warehouse(data)},
            inputs={"data": transform["transformed"]},
        )
        load_cache = CodeNode(
            name="load_cache",
            code_fn=lambda data: {"status": update_cache(data)},
            inputs={"data": transform["transformed"]},
        )
        START >> [extract_db, extract_api, extract_file]
        [extract_db, extract_api, extract_file] >> combine
        combine >> transform
        transform >> [load_warehouse, load_cache]
        [load_warehouse, load_cache] >> END

    result = await Hush(graph).run()
    assert loaded == {"warehouse": [10, 20, 30, 40, 50], "cache": [10, 20, 30, 40, 50]}
    assert result["$state"].status == "ok"
