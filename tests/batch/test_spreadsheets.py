"""Our users' real spreadsheets through ``hush batch`` (issue 27): per-row history, generation
parameters, structured columns, several rows per call, a default answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook

from hush.testing import MockLLMServer
from hush.testing.packed_rows import PackedRowsServer, answer
from tests.batch.conftest import RESULT_COLUMNS, hush, read_rows, write_rows

HISTORY = [
    {"role": "user", "content": "Xin chào, tôi muốn hỏi về đơn hàng."},
    {"role": "assistant", "content": "Dạ, anh/chị cho em xin mã đơn hàng ạ."},
]
SHEET = [
    (1, "Bạn là trợ lý chăm sóc khách hàng.", "Mã đơn là DH-1024, khi nào giao?", HISTORY),
    (2, "Bạn là giáo viên tiếng Anh.", "Dịch giúp: 'Tôi thích học'", None),
    (3, "Bạn là trợ lý chăm sóc khách hàng.", "Tôi muốn đổi địa chỉ giao hàng.", HISTORY[:1]),
]
PARAMS = {
    "temperature": 0,
    "max_tokens": 2048,
    "top_p": 1,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}


def write_sheet(
    path: Path, rows: list[tuple[int, str, str, list[dict[str, str]] | str | None]]
) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["order", "system_prompt", "user_input", "conversation_history"])
    for order, system, user, history in rows:
        cell = json.dumps(history, ensure_ascii=False) if isinstance(history, list) else history
        sheet.append([order, system, user, cell])
    workbook.save(path)


SCRIPT_ARGS = (
    "batch",
    "conversations.xlsx",
    "-o",
    "answers.xlsx",
    "--system",
    "{system_prompt}",
    "--prompt",
    "{user_input}",
    "--history-column",
    "conversation_history",
    "--answer-column",
    "assistant_response",
)


def test_history_and_parameters_are_sent_as_the_script_sends_them(
    workdir: Path, server: MockLLMServer
) -> None:
    write_sheet(workdir / "conversations.xlsx", SHEET)
    (workdir / "params.json").write_text(json.dumps({"temperature": 0.7, "top_p": 1}))
    params = [f"--param={k}={v}" for k, v in PARAMS.items() if k != "top_p"]
    out = hush(workdir, *SCRIPT_ARGS, "--params", "params.json", *params, "--concurrency", "1")
    assert out.returncode == 0, out.stderr

    bodies = sorted((r.body for r in server.requests if r.body), key=lambda b: str(b["messages"]))
    assert len(bodies) == 3
    by_input = {b["messages"][-1]["content"]: b for b in bodies}
    for _, system, user, history in SHEET:
        body = by_input[user]
        assert body["messages"] == [
            {"role": "system", "content": system},
            *(history or []),
            {"role": "user", "content": user},
        ]
        for key, value in PARAMS.items():
            assert body[key] == value, key

    columns, rows = read_rows(workdir / "answers.xlsx")
    assert columns == [
        "order",
        "system_prompt",
        "user_input",
        "conversation_history",
        "assistant_response",
        *RESULT_COLUMNS[1:],
        "model_config",
    ]
    assert [r["order"] for r in rows] == [1, 2, 3]
    for row, (_, _, user, _) in zip(rows, SHEET, strict=True):
        assert user.split()[0] in row["assistant_response"]
        assert json.loads(row["model_config"]) == {"model": "gpt-4o-mini", **PARAMS}


def test_a_history_cell_that_is_not_a_message_list_fails_its_row_only(
    workdir: Path, server: MockLLMServer
) -> None:
    rows = [*SHEET[:2], (3, "Bạn là trợ lý.", "Câu hỏi thứ ba", '{"role": "user"}')]
    write_sheet(workdir / "conversations.xlsx", rows)
    out = hush(workdir, *SCRIPT_ARGS)
    assert out.returncode == 1, out.stderr
    assert server.total_requests == 2
    assert all(r.body["messages"][-1]["content"] != "Câu hỏi thứ ba" for r in server.requests)
    _, written = read_rows(workdir / "answers.xlsx")
    error = written[2]["error"]
    assert error.startswith("HistoryError: row 3: conversation_history is a JSON dict")
    assert "\n" not in error and "nothing was sent" in error
    assert written[0]["assistant_response"] and written[1]["assistant_response"]


def test_an_unknown_param_is_refused_with_a_suggestion_before_any_request(
    workdir: Path, server: MockLLMServer
) -> None:
    write_sheet(workdir / "conversations.xlsx", SHEET)
    for bad, needle in (
        ("temprature=0", "unknown --param temprature; did you mean temperature?"),
        ("response_format=x", "use --schema"),
        ("max_tokens", "write KEY=VALUE"),
    ):
        out = hush(workdir, *SCRIPT_ARGS, "--param", bad)
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr, out.stderr
    assert server.total_requests == 0
    assert not (workdir / "answers.xlsx").exists()


LABEL_SCHEMA = {
    "title": "Label",
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "delivery", "other"]},
        "confidence": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_schema_fills_one_column_per_field(workdir: Path, server: MockLLMServer) -> None:
    (workdir / "label.json").write_text(json.dumps(LABEL_SCHEMA))
    write_rows(workdir / "in.csv", [{"text": "Giao hàng chậm"}, {"text": "Sai hoá đơn"}])
    out = hush(
        workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--schema", "label.json"
    )
    assert out.returncode == 0, out.stderr
    columns, rows = read_rows(workdir / "out.csv")
    assert columns[:5] == ["text", "answer", "category", "confidence", "tags"]
    for row in rows:
        assert row["category"] == "billing"
        assert float(row["confidence"]) == pytest.approx(float(row["confidence"]))
        assert isinstance(json.loads(row["tags"]), list)
        assert json.loads(row["answer"])["category"] == "billing"
    sent = [r.body["response_format"] for r in server.requests if r.body]
    assert all(f["type"] == "json_schema" and f["json_schema"]["strict"] for f in sent)
    assert sent[0]["json_schema"]["schema"]["additionalProperties"] is False


def test_schema_from_a_pydantic_model(workdir: Path, server: MockLLMServer) -> None:
    (workdir / "labels.py").write_text(
        "from pydantic import BaseModel\n\n"
        "class Verdict(BaseModel):\n    label: str\n    score: int\n"
    )
    write_rows(workdir / "in.jsonl", [{"text": "one"}, {"text": "two"}])
    out = hush(
        workdir,
        "batch",
        "in.jsonl",
        "-o",
        "out.jsonl",
        "--prompt",
        "{text}",
        "--schema",
        "labels:Verdict",
    )
    assert out.returncode == 0, out.stderr
    _, rows = read_rows(workdir / "out.jsonl")
    assert all(isinstance(r["label"], str) and isinstance(r["score"], int) for r in rows)


def test_a_reply_that_does_not_validate_is_asked_once_more_then_fails_the_row(
    workdir: Path, server: MockLLMServer
) -> None:
    # The local server's answers ignore "pattern": every reply is invalid here.
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    (workdir / "code.json").write_text(json.dumps(schema))
    write_rows(workdir / "in.csv", [{"text": "airport of Hanoi"}])
    out = hush(
        workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--schema", "code.json"
    )
    assert out.returncode == 1, out.stderr
    bodies = [r.body for r in server.requests if r.body]
    assert len(bodies) == 2
    assert "does not match the schema" in bodies[1]["messages"][-1]["content"]
    _, rows = read_rows(workdir / "out.csv")
    assert rows[0]["error"].startswith("SchemaMismatch: code: ")
    assert "does not match" in rows[0]["error"]


def test_default_answer_fills_failed_rows_and_exits_1(workdir: Path, server: MockLLMServer) -> None:
    rows = [{"text": "fine"}, {"text": "broken [[fail:400]]"}, {"text": "also fine"}]
    write_rows(workdir / "in.csv", rows)
    out = hush(
        workdir,
        "batch",
        "in.csv",
        "-o",
        "out.csv",
        "--prompt",
        "{text}",
        "--default-answer",
        "Other",
    )
    assert out.returncode == 1, out.stderr
    _, written = read_rows(workdir / "out.csv")
    assert [r["answer"] for r in written][1] == "Other"
    assert "400" in written[1]["error"]
    assert written[0]["answer"] != "Other" and written[2]["answer"] != "Other"


def test_default_answer_as_json_fills_the_schema_columns(
    workdir: Path, server: MockLLMServer
) -> None:
    (workdir / "label.json").write_text(json.dumps(LABEL_SCHEMA))
    write_rows(workdir / "in.csv", [{"text": "ok"}, {"text": "broken [[fail:400]]"}])
    default = json.dumps({"category": "other", "confidence": 0, "tags": []})
    out = hush(
        workdir,
        "batch",
        "in.csv",
        "-o",
        "out.csv",
        "--prompt",
        "{text}",
        "--schema",
        "label.json",
        "--default-answer",
        default,
    )
    assert out.returncode == 1, out.stderr
    _, written = read_rows(workdir / "out.csv")
    assert written[1]["category"] == "other" and written[1]["answer"] == default
    assert written[0]["category"] == "billing"


@pytest.fixture
def packed(workdir: Path) -> Iterator[PackedRowsServer]:
    with PackedRowsServer() as server:
        (workdir / "resources.yaml").write_text(
            f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n  model: gpt-4o-mini\n"
            "  max_retries: 1\n  backoff_base: 0.01\n"
        )
        yield server


def test_rows_per_call_packs_maps_back_by_number_and_reasks_missing_rows(
    workdir: Path, packed: PackedRowsServer
) -> None:
    rows = [{"id": str(i), "text": f"question number {i}"} for i in range(95)]
    rows[42]["text"] += " [[omit]]"
    rows[77]["text"] += " [[bad]]"
    write_rows(workdir / "in.csv", rows)
    args = (
        "batch",
        "in.csv",
        "-o",
        "out.csv",
        "--prompt",
        "Answer: {text}",
        "--rows-per-call",
        "10",
    )
    out = hush(workdir, *args)
    assert out.returncode == 0, out.stderr
    packs = [b for b in packed.bodies if "### Row" in b["messages"][-1]["content"]]
    alone = [b for b in packed.bodies if "### Row" not in b["messages"][-1]["content"]]
    assert len(packs) == 10
    assert sorted(b["messages"][-1]["content"] for b in alone) == sorted(
        [f"Answer: {rows[42]['text']}", f"Answer: {rows[77]['text']}"]
    )
    _, written = read_rows(workdir / "out.csv")
    assert [r["answer"] for r in written] == [answer(f"Answer: {r['text']}") for r in rows]
    assert all(not r["error"] and int(r["prompt_tokens"]) > 0 for r in written)
    # Each row has its share of its pack's tokens (and its own call when asked again):
    # the rows add up to what the server counted, give or take rounding.
    assert abs(sum(int(r["prompt_tokens"]) for r in written) - packed.prompt_tokens) <= 95
    assert "packed: 95 rows in 12 request(s) (not 95)" in out.stderr

    packed.reset()
    again = hush(workdir, *args)
    assert again.returncode == 0, again.stderr
    assert packed.total_requests == 0, "a finished row was asked again"
    assert "95 from the checkpoint" in again.stderr


def test_rows_per_call_resume_asks_only_the_row_that_failed(
    workdir: Path, packed: PackedRowsServer
) -> None:
    rows = [{"text": f"question number {i}"} for i in range(20)]
    rows[13]["text"] += " [[fail]]"
    write_rows(workdir / "in.csv", rows)
    args = ("batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--rows-per-call", "10")
    first = hush(workdir, *args, "--default-answer", "Other")
    assert first.returncode == 1, first.stderr
    assert packed.total_requests == 3
    _, written = read_rows(workdir / "out.csv")
    assert written[13]["answer"] == "Other" and "400" in written[13]["error"]
    assert [r["answer"] for i, r in enumerate(written) if i != 13] == [
        answer(r["text"]) for i, r in enumerate(rows) if i != 13
    ]

    packed.reset()
    again = hush(workdir, *args, "--default-answer", "Other")
    assert again.returncode == 1, again.stderr
    asked = [b["messages"][-1]["content"] for b in packed.bodies]
    assert asked == [rows[13]["text"]], "a finished row or pack was asked again"


def test_rows_per_call_refuses_a_system_prompt_with_placeholders(
    workdir: Path, packed: PackedRowsServer
) -> None:
    write_rows(workdir / "in.csv", [{"lang": "vi", "text": "xin chào"}])
    out = hush(
        workdir,
        "batch",
        "in.csv",
        "-o",
        "out.csv",
        "--prompt",
        "{text}",
        "--system",
        "Translate from {lang}",
        "--rows-per-call",
        "5",
    )
    assert out.returncode == 2 and "{lang}" in out.stderr, out.stderr
    assert packed.total_requests == 0
