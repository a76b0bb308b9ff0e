"""A checkpoint file removed or replaced while a run writes to it is an error of the run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.errors import RunError
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


def graph(db: Path, how: str) -> GraphNode:
    async def work(item: int) -> dict[str, int]:
        if item == 3:
            if how == "removed":
                os.remove(db)
            else:
                shutil.copy(db, db.with_name("copy.db"))
                os.replace(db.with_name("copy.db"), db)
        return {"r": item * 2}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=1) as m:
            w = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
            w["r"] >> PARENT["r"]
            START >> w >> END
        m["r"] >> PARENT["rs"]
        START >> m >> END
    return g


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_checkpoint_file_gone_mid_run_fails_the_run_naming_it(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "run.db"
    engine = Hush(graph(db, how))
    result = await engine.run({"items": list(range(10))}, checkpoint=db, run_id="r")
    state = result["$state"]
    assert result["rs"] == [i * 2 for i in range(10)], "the work itself is not lost"
    assert state.status == "error"
    failures = [e for e in state.errors if e.type == "CheckpointWriteError"]
    assert len(failures) == 1, state.errors
    assert str(db) in failures[0].message and how in failures[0].message

    with pytest.raises(RunError, match=r"checkpoint file .* was "):
        await Hush(graph(tmp_path / "other.db", how)).run(
            {"items": list(range(10))},
            checkpoint=tmp_path / "other.db",
            run_id="r",
            raise_on_error=True,
        )
