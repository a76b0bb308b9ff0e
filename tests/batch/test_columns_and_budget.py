"""``hush batch`` columns and budget options: ``latency_s`` and ``queued_s``, ``--max-tokens``,
a budget below one call's reservation, and the spend line after a resume (issue 19, items
7 and 13)."""

from __future__ import annotations

from pathlib import Path

from hush.testing import MockLLMServer
from tests.batch.conftest import hush, read_rows, write_rows


def test_latency_is_the_request_and_queued_the_wait_for_the_limiter(
    workdir: Path, server: MockLLMServer
) -> None:
    resources = workdir / "resources.yaml"
    resources.write_text(resources.read_text() + "  rpm: 120\n")
    server.configure(latency=0.05)
    write_rows(workdir / "in.csv", [{"text": f"row {i}"} for i in range(8)])
    out = hush(
        workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--concurrency", "8"
    )
    assert out.returncode == 0, out.stderr
    _, rows = read_rows(workdir / "out.csv")
    latency = [float(r["latency_s"]) for r in rows]
    queued = [float(r["queued_s"]) for r in rows]
    assert all(value >= 0.05 for value in latency)
    assert all(value >= 0 for value in queued)
    # 8 requests at 2 per second: the later rows wait for the limiter, and that wait is
    # theirs in queued_s, not in latency_s (each request answers in about 0.05 s).
    assert max(queued) > 5 * max(latency), (latency, queued)


def test_max_tokens_is_sent_with_every_request(workdir: Path, server: MockLLMServer) -> None:
    write_rows(workdir / "in.csv", [{"text": "alpha"}, {"text": "beta"}])
    out = hush(
        workdir, "batch", "in.csv", "-o", "out.csv", "--prompt", "{text}", "--max-tokens", "40"
    )
    assert out.returncode == 0, out.stderr
    assert [r.body["max_tokens"] for r in server.requests if r.body] == [40, 40]


def test_a_budget_below_one_reservation_is_refused_before_any_request(
    workdir: Path, server: MockLLMServer
) -> None:
    write_rows(workdir / "in.csv", [{"text": "alpha"}, {"text": "beta"}])
    args = ("batch", "in.csv", "-o", "out.csv", "--prompt", "{text}")
    out = hush(workdir, *args, "--max-total-tokens", "200")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        "hush batch: budget of 200 tokens is below one call's reservation of 256 tokens; "
        "lower --max-tokens or raise the budget"
    )
    assert server.total_requests == 0
    lowered = hush(workdir, *args, "--max-total-tokens", "200", "--max-tokens", "50")
    assert lowered.returncode == 0, lowered.stderr
    assert server.total_requests == 2


def test_after_a_resume_the_spend_line_says_sent_now_and_run_total(
    workdir: Path, server: MockLLMServer
) -> None:
    resources = workdir / "resources.yaml"
    resources.write_text(
        resources.read_text() + "  input_cost_per_mtok: 1000\n  output_cost_per_mtok: 1000\n"
    )
    write_rows(workdir / "in.csv", [{"text": f"row {i} asks something"} for i in range(12)])
    args = (
        "batch",
        "in.csv",
        "-o",
        "out.csv",
        "--prompt",
        "{text}",
        "--concurrency",
        "2",
        "--max-tokens",
        "30",
    )
    first = hush(workdir, *args, "--max-cost", "0.15")
    assert first.returncode == 1, first.stderr
    sent_first = server.total_requests
    assert 0 < sent_first < 12
    second = hush(workdir, *args, "--max-cost", "100")
    assert second.returncode == 0, second.stderr
    sent_now = server.total_requests - sent_first
    assert f"LLM sent now: {sent_now} call(s)" in second.stderr
    assert "run total: 12 call(s)" in second.stderr
