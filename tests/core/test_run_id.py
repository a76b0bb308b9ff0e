"""A run without ``run_id`` gets a fresh one in the form it always had: a version-4 UUID's hex."""

from __future__ import annotations

import uuid

from hush import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.engine import new_run_id


def test_new_run_ids_are_random_version_4_uuids() -> None:
    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        parsed = uuid.UUID(hex=run_id)
        assert parsed.hex == run_id
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


async def test_a_run_without_an_id_is_given_one() -> None:
    with GraphNode(name="one") as graph:
        node = CodeNode(name="a", code_fn=lambda v: {"v": v}, inputs={"v": PARENT["v"]})
        node["v"] >> PARENT["v"]
        START >> node >> END
    engine = Hush(graph)
    first, second = await engine.run({"v": 1}), await engine.run({"v": 1})
    ids = [first["$state"].run_id, second["$state"].run_id]
    assert ids[0] != ids[1]
    assert all(uuid.UUID(hex=i).version == 4 for i in ids)
