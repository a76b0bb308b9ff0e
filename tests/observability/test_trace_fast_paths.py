"""The tracer thread's fast paths give what the general ones give: values encoded once and
kept uncopied only when nothing needs cutting, times formatted like ``datetime``, and a
trace file's lines written a batch at a time with nothing lost."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from datetime import UTC, datetime
from json import encoder as json_encoder
from pathlib import Path
from typing import Any

import pytest

from hush.core.events import Event
from hush.observability import LocalTracer, MemoryTracer, read_trace, serialize
from hush.observability.records import iso_time
from hush.observability.serialize import (
    MAX_DEPTH,
    MAX_ITEMS,
    encoded,
    json_encoder_for,
    to_jsonable,
)


def test_iso_time_is_datetimes_isoformat() -> None:
    draw = random.Random(23)
    stamps = [draw.uniform(0, 2e9) for _ in range(20_000)]
    stamps += [1_700_000_000.0, 1_700_000_000.9999996, 1_700_000_000.0000004, -1.5, 0.0]
    stamps += [math.floor(s) + 0.5e-6 for s in stamps[:100]]
    for stamp in stamps:
        assert iso_time(stamp) == datetime.fromtimestamp(stamp, tz=UTC).isoformat(), stamp


def test_a_plain_value_that_fits_is_kept_as_is_with_its_text() -> None:
    messages = [{"role": "user", "content": "é" * 3_000}, {"role": "assistant", "content": None}]
    data, text = encoded(messages, max_chars=10_000)
    assert data is messages and to_jsonable(messages, max_chars=10_000) is messages
    assert text == json.dumps(messages, ensure_ascii=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1] * (MAX_ITEMS + 500), [1] * MAX_ITEMS + ["… 500 more items"]),
        ({"k": ["x" * 10] * (MAX_ITEMS + 1)}, {"k": ["x" * 10] * MAX_ITEMS + ["… 1 more items"]}),
    ],
)
def test_plain_values_past_the_item_limit_are_still_cut(value: Any, expected: Any) -> None:
    data, text = encoded(value, max_chars=100_000)
    assert data == expected and json.loads(text) == expected


def test_plain_values_past_the_depth_limit_are_still_cut() -> None:
    deep: Any = ["x" * 3_000]
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    data, text = encoded(deep, max_chars=100_000)
    inner = data
    for _ in range(MAX_DEPTH):
        inner = inner[0]
    assert isinstance(inner, str) and inner.startswith("[[[")
    assert json.loads(text) == data


@pytest.mark.parametrize(
    "value",
    [
        "plain text",
        "x" * 500,
        b"abc",
        {"x": "y" * 500},
        {"n": float("nan"), 3: (1, 2)},
        {"set": {1}},
    ],
)
def test_the_text_is_the_json_of_the_value(value: Any) -> None:
    data, text = encoded(value, max_chars=100)
    assert json.loads(text) == data
    assert data == to_jsonable(value, max_chars=100)
    if len(text) > 120:
        assert isinstance(data, str) and "[truncated" in data


def _run_events() -> list[Event]:
    events = [Event("run_start", "g", "r1", name="g", metadata={"tags": ["é", 3]})]
    for i in range(3):
        path = f"g/n[{i}]"
        events.append(Event("node_start", path, "r1", parent="g", name="n", input={"i": i}))
        events.append(Event("node_end", path, "r1", status="ok", output={"text": "ünï" * i}))
    events.append(Event("run_end", "g", "r1", status="ok", output={"cost": float("nan")}))
    return events


async def _traced_run(tracer: Any, events: list[Event]) -> None:
    sink = tracer.subscribe(events[0])
    for event in events:
        sink(event)
    await tracer.flush(10.0)


def _without_ids(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("id", "parent_id")}


def test_trace_lines_are_what_json_dumps_gives_and_hold_every_record(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    local, memory, events = LocalTracer(path), MemoryTracer(), _run_events()
    asyncio.run(_traced_run(local, events))
    asyncio.run(_traced_run(memory, events))
    lines = path.read_text(encoding="utf-8").splitlines()
    local.close()
    assert len(lines) == len(memory.records) == 4
    for line, record in zip(lines, memory.records, strict=True):
        assert line == json.dumps(record | json.loads(line), ensure_ascii=False, default=str)
        assert _without_ids(json.loads(line)) == _without_ids(record)
    assert '"output": {"cost": "nan"}' in lines[-1] and '"tags": ["é", 3]' in lines[-1]


def test_lines_of_the_last_batch_are_written_at_close(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    tracer = LocalTracer(path)
    run = tracer.subscribe(Event("run_start", "g", "r1"))
    run(Event("run_start", "g", "r1", name="g"))
    run(Event("node_start", "g/n", "r1", parent="g", name="n", type="node"))
    run(Event("run_end", "g", "r1", status="error"))
    tracer.close(10.0)
    assert [(r["name"], r["status"]) for r in read_trace(path)] == [
        ("g", "error"),
        ("n", "unfinished"),
    ]


def test_a_file_that_cannot_be_written_costs_one_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trace.jsonl"
    tracer = LocalTracer(path)
    tracer._file.close()
    tracer._file = path.open("rb")
    with caplog.at_level(logging.WARNING, logger="hush.observability"):
        asyncio.run(_traced_run(tracer, _run_events()))
    tracer.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"could not write 4 trace record(s) to {path}"]


@pytest.mark.parametrize("c_encoder", [True, False])
def test_a_reused_encoder_encodes_as_json_dumps(
    c_encoder: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not c_encoder:
        monkeypatch.setattr(json_encoder, "c_make_encoder", None)
    plain, lenient = json_encoder_for(), json_encoder_for(str, allow_nan=True)
    value = {"é": [1, 2.5, None, True, "x\n"], "n": {"deep": []}}
    assert plain(value) == json.dumps(value, ensure_ascii=False)
    for bad in ({"n": float("nan")}, {"p": Path("a")}):
        with pytest.raises((TypeError, ValueError)):
            plain(bad)
    odd = {"n": float("nan"), "p": Path("a")}
    assert lenient(odd) == json.dumps(odd, ensure_ascii=False, default=str)


def test_a_lone_surrogate_is_written_as_its_escape_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    tracer = LocalTracer(path)
    run = tracer.subscribe(Event("run_start", "g", "r1"))
    run(Event("run_start", "g", "r1", name="g"))
    raw = b"caf\xe9 ok".decode("utf-8", "surrogateescape")
    run(Event("node_start", "g/n", "r1", parent="g", name="n", input={"text": raw}))
    run(Event("node_end", "g/n", "r1", status="ok", output="fine"))
    run(Event("run_end", "g", "r1", status="ok"))
    tracer.close(10.0)
    records = {r["name"]: r for r in read_trace(path)}
    assert records["n"]["input"] == {"text": raw} and records["g"]["status"] == "ok"


@pytest.mark.parametrize(
    "value",
    [
        list(range(MAX_ITEMS + 4_000)),
        {"items": [f"row {i}" for i in range(MAX_ITEMS + 1)]},
        [{"a": i, "b": [i, "x" * i]} for i in range(MAX_ITEMS + 20)],
        [{1: "int key", None: "none key"}] * (MAX_ITEMS + 1),
        [[[[1]]]] * (MAX_ITEMS + 1),
        [1.5, float("nan")] * MAX_ITEMS,
        ["y" * 500] * (MAX_ITEMS + 1),
        (True, None, "z") * MAX_ITEMS,
        {"m": {str(i): i for i in range(MAX_ITEMS + 1)}, "n": [1] * 5},
    ],
)
def test_the_head_of_a_long_list_is_what_converting_each_item_gives(
    value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list past the item limit keeps its first items as they are when they are plain JSON
    needing no cut, else converts each: the same data and text either way (a list nested
    near the depth limit included)."""
    nested: Any = value
    for _ in range(MAX_DEPTH - 3):
        nested = [nested]
    fast = [encoded(given, max_chars=50_000) for given in (value, nested)]
    monkeypatch.setattr(serialize, "_plain_json", lambda value, max_chars, depth=0: None)
    slow = [encoded(given, max_chars=50_000) for given in (value, nested)]
    assert fast == slow
