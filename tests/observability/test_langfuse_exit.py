"""What happens to queued spans when the process exits without closing the tracer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from otlp_receiver import HangingServer, OtlpReceiver

SCRIPT = textwrap.dedent(
    """
    import atexit, time
    marks = {}
    # Registered before hush is imported, so it runs after hush's own exit hook.
    atexit.register(lambda: print(f"exit_cost={time.monotonic() - marks['run']:.3f}"))
    import asyncio, sys
    from batch_driver import drive_batch
    from hush.observability import LangfuseTracer

    tracer = LangfuseTracer(sys.argv[1], "sk-exit-test", sys.argv[2], flush_timeout=float(sys.argv[4]))
    asyncio.run(drive_batch(tracer, run_id="exit", items=150, flush_timeout=float(sys.argv[3])))
    print("run done", flush=True)
    marks["run"] = time.monotonic()
    """
)


def run_script(
    host: str, flush_timeout: float, exit_timeout: float
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=str(Path(__file__).parent), LANGFUSE_MEDIA_UPLOAD_ENABLED="false"
    )
    return subprocess.run(
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


def test_exit_against_a_hanging_server_is_bounded(hanging_server: HangingServer) -> None:
    # 602 queued spans are 2 export batches: the SDK's own exit flush would block 2 x 5 s,
    # and waiting for the backend again would cost the exit another flush_timeout.
    done = run_script(hanging_server.url, flush_timeout=2.0, exit_timeout=2.0)
    assert done.returncode == 0, done.stderr
    assert "run done" in done.stdout
    exit_cost = float(done.stdout.split("exit_cost=")[1])
    assert exit_cost < 1.0, "the exit waited for a backend the run found hanging"
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, done.stderr
    assert f"export to {hanging_server.url} failed (no answer within" in warnings[0]
    assert hanging_server.accepted == 1


def test_spans_not_yet_exported_are_delivered_at_exit(receiver: OtlpReceiver) -> None:
    done = run_script(receiver.url, flush_timeout=0.0, exit_timeout=30.0)
    assert done.returncode == 0, done.stderr
    assert len(receiver.wait_for_spans(2 + 150 * 4)) == 2 + 150 * 4
