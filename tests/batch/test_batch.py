"""``hush batch`` run as a user would: a subprocess, real files, the local server over HTTP."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from openpyxl import Workbook

from hush import Budget
from hush.batch import BatchUsageError, run_batch, run_batch_sync
from hush.batch.answers import saved_answers
from hush.providers import get_registry
from hush.testing import MockLLMServer
from tests.batch.conftest import (
    AWKWARD,
    RESULT_COLUMNS,
    asked,
    env_for,
    hush,
    read_rows,
    write_rows,
)
from tests.hush_process import start_hush


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".jsonl"])
def test_batch_round_trips_awkward_text_in_order(
    workdir: Path, server: MockLLMServer, ext: str
) -> None:
    source, output = workdir / f"in{ext}", workdir / f"out{ext}"
    write_rows(source, AWKWARD)
    out = hush(workdir, "batch", source.name, "-o", output.name, "--prompt", "[{lang}] {text}")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "5 rows: 5 answered, 0 failed, 0 from the checkpoint" in out.stderr

    columns, rows = read_rows(output)
    assert columns == ["id", "text", "lang", *RESULT_COLUMNS]
    assert len(rows) == len(AWKWARD)
    for got, want in zip(rows, AWKWARD, strict=True):
        for column in ("id", "text", "lang"):
            assert (got[column] or "") == want[column], (column, got)
        assert got["answer"].startswith("[gpt-4o-mini] reply to: ")
        asked_for = " ".join(f"[{want['lang']}] {want['text']}".split())
        assert asked_for[:40] in got["answer"]
        assert not got["error"]
        assert got["model"] == "gpt-4o-mini"
        assert int(got["prompt_tokens"]) > 0 and int(got["completion_tokens"]) > 0
        assert float(got["latency_s"]) >= 0
    assert sorted(asked(server).values()) == [1] * 5


def test_batch_xlsx_sheet_and_answer_column(workdir: Path) -> None:
    source = workdir / "book.xlsx"
    workbook = Workbook()
    workbook.active.title = "notes"
    workbook.active.append(["ignored"])
    data = workbook.create_sheet("feedback")
    data.append(["text", "score"])
    data.append(["=not a formula", 3])
    data.append(["Giao hàng nhanh", 5])
    data["A2"].data_type = "s"
    workbook.save(source)
    out = hush(
        workdir,
        "batch",
        "book.xlsx",
        "-o",
        "labelled.xlsx",
        "--sheet",
        "feedback",
        "--prompt",
        "Rate {score}: {text}",
        "--answer-column",
        "label",
    )
    assert out.returncode == 0, out.stderr
    columns, rows = read_rows(workdir / "labelled.xlsx")
    assert columns[:3] == ["text", "score", "label"]
    assert [r["text"] for r in rows] == ["=not a formula", "Giao hàng nhanh"]
    assert [r["score"] for r in rows] == [3, 5]
    assert "Rate 5: Giao hàng nhanh" in rows[1]["label"]


def test_batch_killed_mid_run_continues_without_asking_a_finished_row_twice(
    workdir: Path, server: MockLLMServer
) -> None:
    rows = [{"n": str(i), "text": f"row number {i}"} for i in range(120)]
    write_rows(workdir / "in.csv", rows)
    server.configure(latency=0.05)
    args = ["batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--concurrency", "4"]
    args += ["--model", "gpt-4o-mini"]
    with start_hush(args, cwd=workdir, env=env_for(workdir)) as child:
        deadline = time.monotonic() + 60
        while server.total_requests < 40 and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr()
            time.sleep(0.01)
        assert server.total_requests >= 40
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL

    saved = saved_answers(workdir / "out.csv.checkpoint.db")
    finished = {
        answer["answer"].rsplit("reply to: ", 1)[1]: answer
        for found in saved.values()
        for answer in found
    }
    assert len(finished) >= 20, "rows answered before the kill were not saved"
    columns, partial = read_rows(workdir / "out.csv")
    assert columns == ["n", "text", *RESULT_COLUMNS]
    assert len(partial) == 120, "the output written while running is not a complete table"
    before = asked(server)
    server.reset()

    out = hush(workdir, *args)
    assert out.returncode == 0, out.stderr
    assert f"{len(finished)} from the checkpoint" in out.stderr
    again = asked(server)
    assert not set(finished) & set(again), "a finished row was asked again"
    assert set(before) | set(again) == {r["text"] for r in rows}
    assert sum(again.values()) == 120 - len(finished)
    _, done = read_rows(workdir / "out.csv")
    assert [r["n"] for r in done] == [r["n"] for r in rows]
    assert all(r["answer"] and not r["error"] for r in done)
    for row in done:
        if row["text"] in finished:
            assert row["answer"] == finished[row["text"]]["answer"]

    third = hush(workdir, *args)
    assert third.returncode == 0, third.stderr
    assert "120 from the checkpoint" in third.stderr
    assert sum(asked(server).values()) == 120 - len(finished), "a finished batch asked again"


def test_bad_placeholder_is_one_line_exit_2_before_any_request(
    workdir: Path, server: MockLLMServer
) -> None:
    write_rows(workdir / "in.csv", AWKWARD)
    out = hush(workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "Say {txt}")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "{txt}" in lines[0] and "id, text, lang" in out.stderr
    assert server.total_requests == 0
    assert not (workdir / "out.csv").exists()


def test_failing_row_exits_1_with_its_error_filled(workdir: Path) -> None:
    rows = [{"text": "fine"}, {"text": "broken [[fail:400]]"}, {"text": "also fine"}]
    write_rows(workdir / "in.jsonl", rows)
    out = hush(workdir, "batch", "in.jsonl", "-o", "out.jsonl", "--prompt", "{text}")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "1 row(s) failed" in out.stderr and "run the same command again" in out.stderr
    _, done = read_rows(workdir / "out.jsonl")
    assert [bool(r["error"]) for r in done] == [False, True, False]
    assert "400" in done[1]["error"] and done[1]["answer"] is None
    assert done[0]["answer"] and done[2]["answer"]


def test_changed_prompt_is_refused_pointing_to_restart(workdir: Path) -> None:
    write_rows(workdir / "in.csv", AWKWARD)
    first = hush(workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "{text}")
    assert first.returncode == 0, first.stderr
    changed = hush(workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "Now: {text}")
    assert changed.returncode == 2
    assert "--restart" in changed.stderr and "Traceback" not in changed.stderr
    assert len(changed.stderr.strip().splitlines()) <= 2
    restarted = hush(
        workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "Now: {text}", "--restart"
    )
    assert restarted.returncode == 0, restarted.stderr
    _, done = read_rows(workdir / "out.csv")
    assert all("Now: " in r["answer"] for r in done)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.csv", "-o", "o.csv", "--prompt", "{text}"], "missing.csv: no such file"),
        (["in.csv", "-o", "o.txt", "--prompt", "{text}"], "unknown file type '.txt'"),
        (["in.csv", "-o", "o.csv", "--prompt", "@nope.txt"], "nope.txt"),
        (["in.csv", "-o", "o.csv", "--prompt", "{text}", "--model", "nope"], "llm:nope"),
        (["in.csv", "-o", "o.csv", "--prompt", "{text"], "prompt"),
        (["in.csv", "-o", "o.csv"], "--prompt"),
        (["in.csv", "-o", "o.csv", "--prompt", "{text}", "--answer-column", "id"], "'id'"),
        (["in.csv", "-o", "in.csv", "--prompt", "{text}"], "is the input file"),
    ],
)
def test_usage_errors_are_short(workdir: Path, args: list[str], needle: str) -> None:
    write_rows(workdir / "in.csv", AWKWARD)
    out = hush(workdir, "batch", *args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert 1 <= len(out.stderr.strip().splitlines()) <= 2, out.stderr
    assert needle in out.stderr


def test_prompt_and_system_from_files(workdir: Path, server: MockLLMServer) -> None:
    write_rows(workdir / "in.csv", AWKWARD[:2])
    (workdir / "prompt.txt").write_text("Translate to English:\n{text}\n", encoding="utf-8")
    (workdir / "system.txt").write_text("You translate {lang} text.", encoding="utf-8")
    out = hush(
        workdir,
        "batch",
        "in.csv",
        "-o",
        "out.csv",
        "--prompt",
        "@prompt.txt",
        "--system",
        "@system.txt",
    )
    assert out.returncode == 0, out.stderr
    systems = [r.body["messages"][0] for r in server.requests if r.body]
    assert {s["content"] for s in systems} == {"You translate en text.", "You translate vi text."}
    assert all(s["role"] == "system" for s in systems)


async def test_run_batch_from_python_with_rows(workdir: Path, server: MockLLMServer) -> None:
    registry = get_registry()
    registry.register("batch-test", {"base_url": server.base_url, "model": "gpt-4o-mini"})
    try:
        result = await run_batch(
            [{"q": "What is 2+2?"}, {"q": "Thủ đô của Pháp?"}],
            prompt="{q}",
            model="batch-test",
            progress=False,
        )
        assert result.ok and result.output is None and result.checkpoint is None
        assert result.columns == ["q", *RESULT_COLUMNS]
        assert [r["q"] for r in result.rows] == ["What is 2+2?", "Thủ đô của Pháp?"]
        assert "Thủ đô của Pháp?" in result.rows[1]["answer"]
        with pytest.raises(BatchUsageError, match=r"\{qq\}.*columns: q\)"):
            await run_batch([{"q": "x"}], prompt="{qq}", model="batch-test")
    finally:
        registry.unregister("batch-test")


async def test_run_batch_takes_the_run_options_and_still_the_old_keywords(
    workdir: Path, server: MockLLMServer
) -> None:
    registry = get_registry()
    registry.register("batch-test", {"base_url": server.base_url, "model": "gpt-4o-mini"})
    rows = [{"q": "one"}, {"q": "two"}]
    try:
        result = await run_batch(
            rows, prompt="{q}", model="batch-test", progress=False, max_running_nodes=1
        )
        assert result.ok
        with pytest.raises(BatchUsageError, match="budget of 10 tokens"):
            await run_batch(
                rows, prompt="{q}", model="batch-test", budget=Budget(max_total_tokens=10)
            )
        with pytest.warns(
            DeprecationWarning, match=r"max_concurrency= is deprecated, use max_running_nodes"
        ):
            old = await run_batch(
                rows, prompt="{q}", model="batch-test", progress=False, max_concurrency=1
            )
        assert old.ok and [r["answer"] for r in old.rows] == [r["answer"] for r in result.rows]
        with (
            pytest.warns(DeprecationWarning, match=r"max_total_tokens= is deprecated, use budget"),
            pytest.raises(BatchUsageError, match="budget of 10 tokens"),
        ):
            await run_batch(rows, prompt="{q}", model="batch-test", max_total_tokens=10)
        with pytest.raises(TypeError, match="unexpected keyword argument 'max_tokens'"):
            await run_batch(rows, prompt="{q}", model="batch-test", max_tokens=10)
    finally:
        registry.unregister("batch-test")


def test_run_batch_sync_with_a_dataframe(workdir: Path, server: MockLLMServer) -> None:
    pandas = pytest.importorskip("pandas")
    registry = get_registry()
    registry.register("batch-test", {"base_url": server.base_url, "model": "gpt-4o-mini"})
    try:
        frame = pandas.DataFrame({"text": ["một", "dua"], "n": [1, 2]})
        result = run_batch_sync(
            frame, workdir / "out.csv", prompt="{n}: {text}", model="batch-test", progress=False
        )
        assert result.ok and (workdir / "out.csv.checkpoint.db").is_file()
        _, rows = read_rows(workdir / "out.csv")
        assert [r["text"] for r in rows] == ["một", "dua"]
        assert "1: một" in rows[0]["answer"]
    finally:
        registry.unregister("batch-test")


def test_max_cost_stops_cleanly_and_a_larger_budget_resumes(
    workdir: Path, server: MockLLMServer
) -> None:
    resources = workdir / "resources.yaml"
    resources.write_text(
        resources.read_text() + "  input_cost_per_mtok: 1000\n  output_cost_per_mtok: 1000\n"
    )
    rows = [{"id": str(i), "text": f"row {i} asks something"} for i in range(30)]
    write_rows(workdir / "in.csv", rows)
    args = ["batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--concurrency", "4"]

    first = hush(workdir, *args, "--max-cost", "0.3")
    assert first.returncode == 1, first.stderr
    assert "the budget was reached" in first.stderr and "larger --max-cost" in first.stderr
    assert "Traceback" not in first.stderr
    _, written = read_rows(workdir / "out.csv")
    answered = [r for r in written if r["answer"]]
    refused = [r for r in written if r["error"]]
    assert 3 <= len(answered) < 30
    assert len(answered) + len(refused) == 30
    assert all(r["error"].startswith("BudgetExceededError: budget of 0.30 USD") for r in refused)
    assert sum(float(r["cost_usd"]) for r in answered) <= 0.3
    assert server.total_requests == len(answered)
    assert "USD" in first.stderr

    second = hush(workdir, *args, "--max-cost", "100")
    assert second.returncode == 0, second.stderr
    assert server.total_requests == 30, "a row answered before was asked again"
    _, final = read_rows(workdir / "out.csv")
    assert all(r["answer"] for r in final)
    assert [r["answer"] for r in final if r["id"] in {a["id"] for a in answered}] == [
        a["answer"] for a in answered
    ]


def test_batch_cache_answers_a_second_batch_without_requests(
    workdir: Path, server: MockLLMServer
) -> None:
    write_rows(workdir / "in.csv", [{"q": f"question {i}"} for i in range(6)])
    args = ["batch", "in.csv", "--prompt", "{q}", "--cache", "answers.sqlite"]
    assert hush(workdir, *args, "-o", "a.csv").returncode == 0
    assert server.total_requests == 6
    second = hush(workdir, *args, "-o", "b.csv")
    assert second.returncode == 0, second.stderr
    assert server.total_requests == 6
    assert "(6 cached)" in second.stderr
    assert [r["answer"] for r in read_rows(workdir / "a.csv")[1]] == [
        r["answer"] for r in read_rows(workdir / "b.csv")[1]
    ]
    cleared = hush(workdir, "cache", "clear", "answers.sqlite")
    assert cleared.returncode == 0 and "deleted 6 answer(s)" in cleared.stderr
