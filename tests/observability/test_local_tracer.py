"""LocalTracer: JSON lines on disk, read back and rendered as a tree."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from batch_driver import RESOLVED_MODEL, drive_batch, usage_of
from hand_spans import start_run

from hush.observability import LocalTracer, Tracer, format_tree, read_trace
from hush.observability.ids import trace_id_for

ITEMS = 20
RECORDS_PER_RUN = 2 + ITEMS * 4


async def test_batch_run_is_written_as_linked_records(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "run.jsonl"
    tracer = LocalTracer(path)
    assert isinstance(tracer, Tracer)
    run_id = f"run-{uuid.uuid4().hex}"

    await drive_batch(tracer, run_id=run_id, items=ITEMS, failing={7}, threaded={2, 9})

    records = read_trace(path)
    assert len(records) == RECORDS_PER_RUN
    assert {r["run_id"] for r in records} == {run_id}
    assert {r["trace_id"] for r in records} == {trace_id_for(run_id)}
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == RECORDS_PER_RUN

    (root,) = [r for r in records if r["parent_id"] is None]
    assert root["name"] == "batch" and root["kind"] == "run"
    assert root["user_id"] == "user-42" and root["session_id"] == "session-9"
    assert root["tags"] == ["nightly", "batch"]
    assert root["metadata"] == {"team": "ml", "dataset": "faq-v2"}
    assert root["status"] == "ok"
    assert root["end_time"] >= root["start_time"]

    for record in records:
        if record is not root:
            parent = by_id[record["parent_id"]]
            assert parent["start_time"] <= record["start_time"]
        assert record["duration_ms"] >= 0

    for index in range(ITEMS):
        (item,) = [r for r in records if r["name"] == f"llm_batch[{index}]"]
        assert by_id[item["parent_id"]]["name"] == "llm_batch"
        assert item["kind"] == "item" and item["input"] == {"q": f"question {index}"}
        nodes = {r["name"]: r for r in records if r["parent_id"] == item["id"]}
        assert set(nodes) == {"prompt", "llm"}
        assert nodes["prompt"]["input"] == {"q": f"question {index}"}
        (generation,) = [r for r in records if r["parent_id"] == nodes["llm"]["id"]]
        assert generation["type"] == "generation"
        assert generation["model_parameters"] == {"temperature": 0.0, "max_tokens": 64}
        if index == 7:
            for record in (item, nodes["llm"], generation):
                assert record["level"] == "ERROR"
                assert record["error"] == "RuntimeError: upstream 503 for item 7"
            continue
        assert item["level"] == "DEFAULT" and item["error"] is None
        assert generation["model"] == RESOLVED_MODEL
        usage = usage_of(index)
        assert generation["usage"] == {
            "input": usage["prompt_tokens"],
            "output": usage["completion_tokens"],
            "total": usage["total_tokens"],
        }
        assert generation["output"] == f"answer {index}"
    tracer.close()


async def test_tree_rendering(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    tracer = LocalTracer(path)
    root = start_run(tracer, "batch", run_id="r1", user_id="u1", session_id="s1", tags=["a", "b"])
    batch = root.child("llm_batch", kind="map")
    for index in range(2):
        item = batch.child(f"llm_batch[{index}]", kind="item", input={"q": index})
        await asyncio.sleep(0.002)
        llm = item.child("llm", kind="llm")
        generation = llm.generation("llm", model="gpt-4o-mini", input=[{"role": "user"}])
        if index == 1:
            generation.end(error=TimeoutError("no reply\nsecond line"))
            llm.end(error=TimeoutError("no reply"))
            item.end(error=TimeoutError("no reply"))
        else:
            generation.end(output="hi", usage={"prompt_tokens": 3, "completion_tokens": 2})
            llm.end(output="hi")
            item.end(output="hi")
        await asyncio.sleep(0.002)
    batch.end(output=["hi", None])
    root.end(output={"answers": ["hi", None]}, status="error")
    await tracer.flush(5.0)

    text = format_tree(read_trace(path))
    normalized = re.sub(r"\d+(\.\d+)? (ms|s)\b", "T", text)
    assert normalized == "\n".join(
        [
            "batch  [run]  T  (error)  run_id=r1  user=u1  session=s1  tags=a,b",
            "└── llm_batch  [map]  T",
            "    ├── llm_batch[0]  [item]  T",
            "    │   └── llm  [llm]  T",
            "    │       └── llm  [generation]  gpt-4o-mini  T  tokens 3 in / 2 out / 5 total",
            "    └── llm_batch[1]  [item]  T  ERROR TimeoutError: no reply",
            "        └── llm  [llm]  T  ERROR TimeoutError: no reply",
            "            └── llm  [generation]  gpt-4o-mini  T  ERROR TimeoutError: no reply",
        ]
    )
    with_io = format_tree(read_trace(path), show_io=True).splitlines()
    first_item = next(i for i, line in enumerate(with_io) if "llm_batch[0]" in line)
    assert with_io[first_item + 1 : first_item + 4] == [
        '    │   │ in:  {"q": 0}',
        '    │   │ out: "hi"',
        "    │   └── llm  [llm]  " + with_io[first_item + 3].split("[llm]  ")[1],
    ]
    tracer.close()


def test_tree_shows_spans_whose_parent_was_never_written() -> None:
    records: list[dict[str, Any]] = [
        {
            "id": "a",
            "parent_id": None,
            "name": "batch",
            "kind": "run",
            "run_id": "r",
            "start_time": "1",
            "duration_ms": 5.0,
            "level": "DEFAULT",
        },
        {
            "id": "c",
            "parent_id": "b",
            "name": "llm_batch[3]",
            "kind": "item",
            "start_time": "2",
            "duration_ms": 0.5,
            "level": "DEFAULT",
        },
    ]
    assert format_tree(records).splitlines() == [
        "batch  [run]  5 ms  run_id=r",
        "",
        "llm_batch[3]  [item]  0.50 ms  (parent b not recorded)",
    ]


async def test_concurrent_runs_from_tasks_and_threads_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    tracer = LocalTracer(path)
    run_ids = [f"run-{i}" for i in range(5)]

    await asyncio.gather(
        *(
            drive_batch(tracer, run_id=run_id, items=ITEMS, threaded=range(0, ITEMS, 2))
            for run_id in run_ids
        )
    )

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 * RECORDS_PER_RUN
    records = [json.loads(line) for line in lines]
    for run_id in run_ids:
        mine = [r for r in records if r["run_id"] == run_id]
        ids = {r["id"] for r in mine}
        assert len(mine) == RECORDS_PER_RUN
        assert all(r["parent_id"] is None or r["parent_id"] in ids for r in mine)
    tracer.close()


async def test_flush_writes_without_close_and_close_drops_later_spans(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    tracer = LocalTracer(path)
    root = start_run(tracer, "g", run_id="r")
    root.child("n", kind="node", input=b"raw").end(output={1, 2})
    await tracer.flush(5.0)
    (record,) = read_trace(path)
    assert record["input"] == "<3 bytes>" and record["output"] == [1, 2]

    tracer.close()
    root.end()
    await tracer.flush(1.0)
    assert len(read_trace(path)) == 1


def test_read_trace_skips_malformed_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"type": "span", "id": "a", "name": "x"}\n\n[1]\n{"id": "c"}\n{"id": "b", "na',
        encoding="utf-8",
    )
    assert [r["id"] for r in read_trace(path)] == ["a"]
    (warning,) = caplog.records
    assert "3 line(s) are not trace records and were skipped (first: line 3)" in warning.message


def test_bad_path_fails_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(OSError):
        LocalTracer(blocker / "sub" / "t.jsonl")
