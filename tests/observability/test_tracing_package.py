"""The package surface, the optional langfuse dependency, and the tracer thread's bounded waits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

from hush.core.events import Event
from hush.observability.spans import OpenSpan, RunSpans, SpanTracer


def test_package_imports_without_langfuse() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["langfuse"] = None
        import hush.observability as obs
        assert not any(m.startswith(("langfuse", "opentelemetry")) for m in sys.modules if sys.modules[m])
        assert {"Tracer", "LocalTracer", "MemoryTracer", "OTLPTracer"} <= set(obs.__all__)
        try:
            obs.LangfuseTracer
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'hush[langfuse]'" in done.stdout


def test_langfuse_tracer_is_exported() -> None:
    from hush.observability import LangfuseTracer
    from hush.observability.langfuse import LangfuseTracer as Direct

    assert LangfuseTracer is Direct


def soon(seconds: float) -> float:
    """The deadline ``seconds`` from now."""
    return time.monotonic() + seconds


class Collecting(SpanTracer):
    def __init__(self, export: Callable[[], None]) -> None:
        self.ended: list[str] = []
        self.export = export
        super().__init__()

    def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        self.ended.append(f"{span.name}:{end.status}")

    def _export(self) -> None:
        self.export()

    def _closing(self) -> None:
        self.export()


def test_hanging_export_is_bounded_queued_and_does_not_hold_up_asyncio_run() -> None:
    release = threading.Event()
    calls = 0

    def hang() -> None:
        nonlocal calls
        calls += 1
        release.wait(30)

    tracer = Collecting(hang)

    async def main() -> list[bool]:
        return [await tracer._drained(soon(0.1)), await tracer._drained(soon(0.1))]

    started = time.monotonic()
    assert asyncio.run(main()) == [False, False]
    assert time.monotonic() - started < 1.0
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    sink(Event("run_start", "g", "r", name="g"))
    sink(Event("node_start", "g/n", "r", parent="g", name="n"))
    assert calls == 1 and tracer.ended == []
    release.set()
    asyncio.run(tracer.flush(5.0))
    assert calls == 3 and tracer.ended == []
    sink(Event("run_end", "g", "r", status="ok"))
    tracer.close(1.0)
    assert tracer.writer.closed and calls == 4
    assert tracer.ended == ["g:ok", "n:unfinished"]
    sink(Event("run_start", "late", "r2"))
    assert tracer._runs == {}


def test_failing_export_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    assert asyncio.run(Collecting(fail).flush(1.0)) is None
    assert "tracing export failed" in caplog.text


def test_an_idle_tracer_holds_no_thread_and_wakes_on_the_next_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import weakref

    from hush.observability import spans

    monkeypatch.setattr(spans, "IDLE_EXIT", 0.05)
    tracer = Collecting(lambda: None)
    sink = tracer.subscribe(Event("run_start", "g", "r"))
    sink(Event("run_start", "g", "r", name="g"))
    sink(Event("run_end", "g", "r", status="ok"))
    assert asyncio.run(tracer._drained(soon(5.0)))
    thread = tracer.writer._thread
    assert thread is not None
    thread.join(5.0)
    assert not thread.is_alive() and tracer.writer._thread is None
    sink(Event("run_start", "h", "r2", name="h"))
    sink(Event("run_end", "h", "r2", status="ok"))
    assert asyncio.run(tracer._drained(soon(5.0)))
    assert tracer.ended == ["g:ok", "h:ok"]
    tracer.writer._thread.join(5.0)  # type: ignore[union-attr]
    ref = weakref.ref(tracer)
    del tracer, sink
    gc.collect()
    assert ref() is None, "an unused tracer is kept alive"
