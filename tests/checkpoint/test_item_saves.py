"""How map items are keyed and saved on the hot path: keyed a block at a time when their
inputs are in memory (never read ahead otherwise), pickled together when their loop turn
hands them over, and saved as they were when their map ended."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hush.checkpoint import open_checkpoint
from hush.checkpoint.reader import list_runs, load_entries
from hush.checkpoint.sqlite_store import MAX_BATCH
from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.items import KEY_BLOCK
from hush.core.nodes.iteration import MapNode


def mapped(body: Any, cap: int, then: Any = None) -> Hush:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=cap) as m:
            node = CodeNode(name="body", code_fn=body, inputs={"x": PARENT["x"]})
            node["out"] >> PARENT["out"]
            START >> node >> END
        m["out"] >> PARENT["outs"]
        m["error"] >> PARENT["errors"]
        if then is None:
            START >> m >> END
        else:
            after = CodeNode(name="after", code_fn=then, inputs={"outs": m["out"]})
            after["outs"] >> PARENT["outs"]
            START >> m >> after >> END
    return Hush(g)


def items_saved(db: Path) -> dict[str, Any]:
    return {k: v for k, v in load_entries(db, "r").items() if k.startswith("g/m[")}


async def test_results_are_saved_as_they_were_when_their_map_ended(tmp_path: Path) -> None:
    def body(x: int) -> dict[str, Any]:
        return {"out": {"x": x, "seen": []}}

    def after(outs: list[dict[str, Any]]) -> dict[str, Any]:
        for out in outs:
            out["seen"].append("changed after the map")
        return {"outs": outs}

    db = tmp_path / "run.db"
    # An iterator input cannot be keyed, so the map node itself is not saved: nothing but the
    # map's own wait for its items' commits stands between them and the next node.
    result = await mapped(body, 4, after).run({"xs": iter(range(50))}, checkpoint=db, run_id="r")
    assert result["outs"][0]["seen"] == ["changed after the map"]
    saved = items_saved(db)
    assert len(saved) == 50
    assert all(v["out"]["seen"] == [] for v in saved.values()), (
        "a change made after the map reached the saved results"
    )


class Failing:
    """A sized input whose iteration fails after ``good`` items."""

    def __init__(self, size: int, good: int) -> None:
        self.size, self.good = size, good

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        for i in range(self.size):
            if i == self.good:
                raise OSError(f"the source broke at item {i}")
            yield i


async def test_an_input_that_fails_midway_keeps_the_items_taken_before_it(tmp_path: Path) -> None:
    good = KEY_BLOCK + 6  # the error comes in the middle of a block
    db = tmp_path / "run.db"
    with pytest.raises(Exception, match="the source broke at item") as failed:
        await mapped(lambda x: {"out": x}, 1).run(
            {"xs": Failing(2 * KEY_BLOCK, good)}, checkpoint=db, run_id="r", raise_on_error=True
        )
    assert "m" in str(failed.value)
    assert len(items_saved(db)) == good, "items taken before the input failed were not run"


class Lazy:
    """A lazy input that knows its length (as ``tqdm(generator, total=n)`` does)."""

    def __init__(self, items: Iterator[int], size: int) -> None:
        self.items, self.size = items, size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return self.items


@pytest.mark.parametrize("sized", [False, True], ids=["iterator", "sized-lazy"])
async def test_an_iterator_input_is_not_read_ahead(tmp_path: Path, sized: bool) -> None:
    pulled: list[int] = []
    seen: list[int] = []

    def generate() -> Iterator[int]:
        for i in range(3 * KEY_BLOCK):
            pulled.append(i)
            yield i

    def source() -> Any:
        return Lazy(generate(), 3 * KEY_BLOCK) if sized else generate()

    async def body(x: int) -> dict[str, Any]:
        seen.append(len(pulled) - (x + 1))  # taken beyond this item (on the loop, no thread)
        await asyncio.sleep(0)  # a body that never suspends would keep its worker going alone
        return {"out": x}

    db = tmp_path / "run.db"
    result = await mapped(body, 2).run({"xs": source()}, checkpoint=db, run_id="r")
    assert result["outs"] == list(range(3 * KEY_BLOCK))
    # Two workers take a handful ahead (each takes its next item as it finishes one); a block
    # read ahead would be KEY_BLOCK.
    assert max(seen) < KEY_BLOCK // 4, f"items were pulled {max(seen)} ahead with two workers"


async def test_a_batch_filled_by_one_loop_turn_is_committed_whole(tmp_path: Path) -> None:
    """The entry that fills a hand-over (MAX_BATCH results in one loop turn) is numbered
    before the batch is handed over, so waiting for it ends with that batch's commit."""
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        numbers = [
            store.queue_result(f"g/m[{i}]", f"d{i}", {"i": i}, None, f"g/m[{i}]")
            for i in range(MAX_BATCH)
        ]
        assert numbers == list(range(1, MAX_BATCH + 1))
        await asyncio.wait_for(store.durable(numbers[-1]), 10)


async def test_a_result_that_does_not_pickle_and_spent_nothing_leaves_no_row(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    result = await mapped(lambda x: {"out": threading.Lock()}, 4).run(
        {"xs": list(range(10))}, checkpoint=db, run_id="r"
    )
    assert result["errors"] == [None] * 10
    assert items_saved(db) == {}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT coalesce(sum(entries), 0) FROM chunks").fetchone() == (0,)
    assert list_runs(db)[0].entries == 0, "an unsaved result was counted as saved"


@pytest.mark.parametrize("limit", [None, 2], ids=["fast path", "run-wide slot"])
async def test_what_an_item_saves_inside_it_is_under_its_content_name(
    tmp_path: Path, limit: int | None
) -> None:
    """A failed item's clean nodes are saved under the item's content name, not its
    position, and a resumed run reruns only what failed; an item of one plain node, which
    needs no name while it runs, is saved whole under it all the same."""
    fail = {"on": True}

    def first(x: int) -> dict[str, Any]:
        return {"y": x * 10}

    def second(y: int) -> dict[str, Any]:
        if fail["on"] and y % 20:
            raise ValueError("odd")
        return {"out": y + 1}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=4) as m:
            a = CodeNode(name="first", code_fn=first, inputs={"x": PARENT["x"]})
            b = CodeNode(name="second", code_fn=second, inputs={"y": a["y"]})
            b["out"] >> PARENT["out"]
            START >> a >> b >> END
        m["out"] >> PARENT["outs"]
        START >> m >> END

    db = tmp_path / "run.db"
    await Hush(g).run({"xs": list(range(6))}, checkpoint=db, run_id="r", max_running_nodes=limit)
    inside = {k for k in items_saved(db) if "/" in k[len("g/m[") :]}
    assert len(inside) == 3 and all(k.endswith(".0]/first") for k in inside), inside
    fail["on"] = False
    again = await Hush(g).run(
        {"xs": list(range(6))}, checkpoint=db, run_id="r", max_running_nodes=limit
    )
    assert again["outs"] == [x * 10 + 1 for x in range(6)]

    db = tmp_path / "single.db"
    single = mapped(lambda x: {"out": x * 10}, 4)
    await single.run({"xs": list(range(6))}, checkpoint=db, run_id="r", max_running_nodes=limit)
    whole = set(items_saved(db))
    assert len(whole) == 6 and all(k.endswith(".0]") for k in whole), whole
