"""``hush batch --batch-api``: one batch instead of chat requests, and a killed run re-attaches."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hush.testing import MockLLMServer
from tests.batch.conftest import env_for, hush, read_rows, write_rows
from tests.hush_process import Started, start_hush

ARGS = ["batch", "in.csv", "-o", "out.csv", "--prompt", "Say: {text}", "--batch-api"]


@pytest.fixture
def batch_dir(workdir: Path, server: MockLLMServer) -> Path:
    """A workdir whose resource collects for 0.2 s and polls every 0.05 s."""
    (workdir / "resources.yaml").write_text(
        f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n  model: gpt-4o-mini\n"
        "  input_cost_per_mtok: 2.5\n  output_cost_per_mtok: 10\n"
        "  batch_window: 0.2\n  batch_poll_interval: 0.05\n"
    )
    server.batch_api.configure(turnaround=0.0)
    server.batch_api.batches.clear()
    return workdir


def _paths(server: MockLLMServer) -> list[str]:
    return [r.path for r in server.requests]


def test_batch_api_sends_one_batch_and_no_chat_request(
    batch_dir: Path, server: MockLLMServer
) -> None:
    rows = [{"text": f"row {i}"} for i in range(6)]
    write_rows(batch_dir / "in.csv", rows)
    out = hush(batch_dir, *ARGS)
    assert out.returncode == 0, out.stderr
    paths = _paths(server)
    assert paths.count("/v1/chat/completions") == 0
    assert paths.count("/v1/batches") == 1
    (batch,) = server.batch_api.batches.values()
    assert batch.total == 6
    assert f"batch API: 1 batch(es) of 6 request(s): {batch.id}" in out.stderr
    _, written = read_rows(batch_dir / "out.csv")
    for i, row in enumerate(written):
        assert f"row {i}" in str(row["answer"]) and not row["error"]


def _wait_for(condition: Callable[[], bool], child: Started) -> None:
    deadline = time.monotonic() + 60
    while not condition() and time.monotonic() < deadline:
        assert child.poll() is None, child.stderr()
        time.sleep(0.01)
    assert condition(), "the child never got there"


def _kill_while_polling(batch_dir: Path, server: MockLLMServer) -> None:
    """Start ``hush batch --batch-api`` and SIGKILL it once its batch is being polled."""
    args = [*ARGS, "--model", "gpt-4o-mini"]
    with start_hush(args, cwd=batch_dir, env=env_for(batch_dir)) as child:
        _wait_for(lambda: any(p.startswith("/v1/batches/") for p in _paths(server)), child)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL


def test_killed_while_the_batch_runs_then_rerun_creates_no_second_batch(
    batch_dir: Path, server: MockLLMServer
) -> None:
    rows = [{"text": f"row {i}"} for i in range(8)]
    write_rows(batch_dir / "in.csv", rows)
    server.batch_api.configure(turnaround=None)
    _kill_while_polling(batch_dir, server)
    assert len(server.batch_api.batches) == 1
    assert not (batch_dir / "out.csv").exists() or all(
        not row["answer"] for row in read_rows(batch_dir / "out.csv")[1]
    )

    server.batch_api.release()
    out = hush(batch_dir, *ARGS)
    assert out.returncode == 0, out.stderr
    assert len(server.batch_api.batches) == 1
    assert _paths(server).count("/v1/chat/completions") == 0
    (batch_id,) = server.batch_api.batches
    assert f"batch API: 1 batch(es) of 8 request(s): {batch_id}" in out.stderr
    _, written = read_rows(batch_dir / "out.csv")
    assert len(written) == 8
    for i, row in enumerate(written):
        assert f"row {i}" in str(row["answer"]) and not row["error"]


def test_a_rerun_with_new_rows_submits_only_the_rows_never_sent(
    batch_dir: Path, server: MockLLMServer
) -> None:
    write_rows(batch_dir / "in.csv", [{"text": f"row {i}"} for i in range(5)])
    server.batch_api.configure(turnaround=None)
    _kill_while_polling(batch_dir, server)
    (first,) = server.batch_api.batches.values()

    write_rows(batch_dir / "in.csv", [{"text": f"row {i}"} for i in range(7)])
    server.batch_api.release()
    out = hush(batch_dir, *ARGS)
    assert out.returncode == 0, out.stderr
    batches = list(server.batch_api.batches.values())
    assert [b.id for b in batches[:1]] == [first.id]
    assert [b.total for b in batches] == [5, 2]
    _, written = read_rows(batch_dir / "out.csv")
    for i, row in enumerate(written):
        assert f"row {i}" in str(row["answer"]) and not row["error"]
