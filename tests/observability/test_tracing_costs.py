"""What tracing may cost a run: a dead backend, a full queue, a failed or forked thread."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest
from otlp_receiver import HangingServer, closed_port_url

from hush.core.events import Event
from hush.observability import MemoryTracer
from hush.observability.health import BackendHealth
from hush.observability.spans import OpenSpan, RunSpans, SpanTracer

FLUSH_TIMEOUT = 1.0
ITEMS = 5_000

EXIT_SCRIPT = textwrap.dedent(
    """
    import atexit, sys, time
    marks = {}
    # Registered before hush is imported, so it runs after hush's own exit hook.
    atexit.register(lambda: print(
        f"attempts={tracer.health.attempts} exit_cost={time.monotonic() - marks['run']:.3f}",
        flush=True,
    ))
    import asyncio
    sys.path.insert(0, sys.argv[3])
    from bench_map import map_engine, trivial
    from hush.observability import OTLPTracer

    tracer = OTLPTracer(sys.argv[1], flush_timeout=float(sys.argv[2]))
    engine = map_engine(trivial, 100)
    asyncio.run(engine.run({"items": list(range(int(sys.argv[4])))}, tracer=tracer))
    marks["run"] = time.monotonic()
    """
)


def run_to_exit(url: str) -> tuple[int, float, list[str]]:
    """Run 5,000 traced items in a fresh interpreter; the exporter's attempts, what the
    exit cost after the run returned, and the tracing warnings."""
    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, url, str(FLUSH_TIMEOUT), str(benchmarks), str(ITEMS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = dict(field.split("=") for field in done.stdout.split())
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    return int(report["attempts"]), float(report["exit_cost"]), warnings


@pytest.mark.parametrize("where", ["refused", "hanging"])
def test_a_dead_backend_costs_one_deadline_and_one_warning_run_and_exit_together(
    where: str, hanging_server: HangingServer
) -> None:
    url = closed_port_url() if where == "refused" else hanging_server.url
    attempts, exit_cost, warnings = run_to_exit(url)
    assert len(warnings) == 1, warnings
    assert f"OTLP export to {url}/v1/traces " in warnings[0]
    if where == "refused":
        assert "failed (cannot connect" in warnings[0]
    else:  # depending on when the request began within the run's wait
        assert "failed (no answer within" in warnings[0] or "did not finish" in warnings[0]
    # ~10,000 spans are 20 batches: one request found the backend dead, the others gave
    # up at once, and the exit did not wait for it again.
    assert attempts == 1
    if where == "hanging":
        assert hanging_server.accepted == 1
    assert exit_cost < 3 * FLUSH_TIMEOUT


class Blocking(SpanTracer):
    """Records ended spans; the first ``node_end`` waits in the thread until ``release``."""

    def __init__(self, **kwargs: float | int) -> None:
        self.ended: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.root_ended = threading.Event()
        self.dropped = -1
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(30)
        self.ended.append(span.name)
        if span.parent is None:
            self.dropped = run.dropped
            self.root_ended.set()


def node_events(run_id: str, count: int) -> list[Event]:
    events = [Event("run_start", "g", run_id, name="g")]
    for i in range(count):
        events.append(Event("node_start", f"g/n{i}", run_id, parent="g", name=f"n{i}"))
        events.append(Event("node_end", f"g/n{i}", run_id, status="ok"))
    return events


async def test_a_full_queue_drops_events_with_one_warning_and_never_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer = Blocking(max_queued_events=10)
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    for event in node_events("r", 1):
        sink(event)
    assert await asyncio.to_thread(tracer.entered.wait, 10)
    for event in node_events("r", 50)[3:]:
        sink(event)  # the thread is held: only 10 fit, the rest are dropped at once
    assert tracer.writer.pending == 10
    sink(Event("run_end", "g", "r", status="ok"))  # a run's end is always kept
    tracer.release.set()
    with anyio.fail_after(10):
        await tracer.flush(10.0)

    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "dropped 88 event(s)" in warning and "max_queued_events" in warning
    assert tracer.ended[0] == "n0" and tracer.ended[-1] == "g" and tracer._runs == {}
    assert tracer.dropped == 88, "the run's root knows how many of its events were dropped"
    await tracer.flush(1.0)
    assert len(caplog.records) == 1, "the drops were reported once"


async def test_a_tracer_behind_the_run_says_so_not_that_the_backend_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer = Blocking()
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    for event in [*node_events("r", 3), Event("run_end", "g", "r", status="ok")]:
        sink(event)
    assert await asyncio.to_thread(tracer.entered.wait, 10)
    await tracer.flush(0.05)
    await tracer.flush(5.0)  # shares the deadline that ran out: no second wait, no warning
    tracer.release.set()

    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "fell behind the run" in warning and "not yet handled" in warning
    assert "export to" not in warning and not tracer.health.down
    assert await asyncio.to_thread(tracer.root_ended.wait, 10)
    assert tracer.ended == ["n0", "n1", "n2", "g"]


class Fatal(BaseException):
    """Not an ``Exception``: escapes the handling of one event."""


class Failing(SpanTracer):
    def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        raise Fatal("span building broke")


async def test_a_failed_thread_disables_the_tracer_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer = Failing()
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    for event in node_events("r", 3):
        sink(event)
    with anyio.fail_after(10):
        await tracer.flush(30.0)  # released when the thread fails, not at its deadline
        await tracer.flush(30.0)

    assert isinstance(tracer.failure, Fatal)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "tracing stopped" in warning and "Fatal: span building broke" in warning
    for event in node_events("r2", 1000):
        sink(event)
    assert tracer.writer.pending == 0, "a disabled tracer queues nothing"
    assert "backend" not in caplog.text and "export to" not in caplog.text


def test_an_exception_in_one_span_loses_that_span_only(caplog: pytest.LogCaptureFixture) -> None:
    class Picky(MemoryTracer):
        def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
            if span.name == "bad":
                raise ValueError("cannot build")
            super().span_ended(run, span, end)

    tracer = Picky()
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    sink(Event("run_start", "g", "r", name="g"))
    for name in ("bad", "good"):
        sink(Event("node_start", f"g/{name}", "r", parent="g", name=name))
        sink(Event("node_end", f"g/{name}", "r", status="ok"))
    sink(Event("run_end", "g", "r", status="ok"))
    asyncio.run(tracer.flush(10.0))
    assert [r["name"] for r in tracer.records] == ["good", "g"]
    assert tracer.failure is None and tracer._runs == {}
    assert "could not handle a node_end event of g/bad" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_traces_with_a_thread_of_its_own() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os
        from hush.core.events import Event
        from hush.observability import MemoryTracer

        tracer = MemoryTracer()
        sink = tracer.subscribe(Event("run_start", "g", "r"))
        sink(Event("run_start", "g", "r", name="g"))
        asyncio.run(tracer.flush(10))
        assert tracer.writer._thread is not None
        pid = os.fork()
        if pid == 0:
            sink(Event("run_end", "g", "r", status="ok"))
            asyncio.run(tracer.flush(10))
            os._exit(0 if [r["name"] for r in tracer.records] == ["g"] else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_one_warning_per_outage_whichever_timer_says_it_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    health = BackendHealth("OTLP", "http://collector", logging.getLogger("hush.observability.t"))
    health.slow(1.0, "the work goes on in the background")  # the flush ran out first
    health.failed("no answer within 1.0 s", spans=5)  # then the request timed out
    assert health.down and not health.try_export() and health.dropped == 5
    health.retry_after = 0.0
    assert health.try_export()  # the retry that is due
    health.succeeded()
    health.failed("cannot connect")  # a new outage is said again
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "did not finish within 1.0 s" in warnings[0]
    assert "failed (cannot connect)" in warnings[1] and health.outages == 2
    assert any("works again" in r.getMessage() for r in caplog.records)
