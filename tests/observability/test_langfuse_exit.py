"""What happens to queued spans when the process exits without closing the tracer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from otlp_receiver import HangingServer, OtlpReceiver

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from batch_driver import drive_batch
    from hush.observability import LangfuseTracer

    tracer = LangfuseTracer(sys.argv[1], "sk-exit-test", sys.argv[2], flush_timeout=float(sys.argv[4]))
    asyncio.run(drive_batch(tracer, run_id="exit", items=150, flush_timeout=float(sys.argv[3])))
    print("run done", flush=True)
    """
)


def run_script(
    host: str, flush_timeout: float, exit_timeout: float = 0.5
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(
        os.environ, PYTHONPATH=str(Path(__file__).parent), LANGFUSE_MEDIA_UPLOAD_ENABLED="false"
    )
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            f"pk-lf-exit-{uuid.uuid4().hex}",
            host,
            str(flush_timeout),
            str(exit_timeout),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    return done, time.monotonic() - started


def test_exit_against_a_hanging_server_is_bounded(hanging_server: HangingServer) -> None:
    # 602 queued spans are 2 export batches: the SDK's own exit flush would block 2 x 5 s,
    # and waiting for each would cost the exit another flush_timeout.
    done, elapsed = run_script(hanging_server.url, flush_timeout=0.5)
    assert done.returncode == 0, done.stderr
    assert "run done" in done.stdout
    assert elapsed < 6
    # One warning, whether the run's flush ran out while the request hung or just before
    # it was sent; the exit did not wait for the backend again.
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, done.stderr
    assert f"export to {hanging_server.url}" in warnings[0]
    assert hanging_server.accepted <= 1


def test_spans_not_yet_exported_are_delivered_at_exit(receiver: OtlpReceiver) -> None:
    done, _ = run_script(receiver.url, flush_timeout=0.0, exit_timeout=30.0)
    assert done.returncode == 0, done.stderr
    assert len(receiver.wait_for_spans(2 + 150 * 4)) == 2 + 150 * 4
