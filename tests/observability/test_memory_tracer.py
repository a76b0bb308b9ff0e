"""MemoryTracer keeps the same records as LocalTracer, in memory."""

from __future__ import annotations

from batch_driver import drive_batch

from hush.observability import MemoryTracer, Tracer


async def test_records_and_queries() -> None:
    tracer = MemoryTracer()
    assert isinstance(tracer, Tracer)

    await drive_batch(tracer, run_id="r", items=4, failing={1})

    assert len(tracer.records) == 2 + 4 * 4
    (root,) = tracer.find("batch", kind="run")
    (item,) = tracer.find("llm_batch[1]")
    assert item["level"] == "ERROR"
    assert len(tracer.find(kind="generation")) == 4
    assert len(tracer.find(kind="item", level="DEFAULT")) == 3
    assert tracer.tree().startswith("batch  [run]")
    assert root["user_id"] == "user-42"
    tracer.clear()
    assert tracer.records == []
