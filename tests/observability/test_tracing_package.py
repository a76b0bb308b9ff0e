"""The package surface, the optional langfuse dependency, and the bounded blocking call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

from hush.observability.bounded import BoundedCall


def test_package_imports_without_langfuse() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["langfuse"] = None
        import hush.observability as obs
        assert not any(m.startswith(("langfuse", "opentelemetry")) for m in sys.modules if sys.modules[m])
        assert {"Tracer", "Span", "Generation", "LocalTracer", "MemoryTracer"} <= set(obs.__all__)
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


def test_hanging_call_is_bounded_joined_and_does_not_hold_up_asyncio_run() -> None:
    release = threading.Event()
    calls = 0

    def hang() -> None:
        nonlocal calls
        calls += 1
        release.wait(30)

    bounded = BoundedCall(hang, name="test-hang")

    async def main() -> list[bool]:
        return [await bounded.run(0.1), await bounded.run(0.1)]

    started = time.monotonic()
    assert asyncio.run(main()) == [False, False]
    assert time.monotonic() - started < 1.0
    assert calls == 1 and bounded.running
    release.set()
    assert bounded.run_sync(5.0)
    assert asyncio.run(bounded.run(1.0)) is True
    assert calls == 2


def test_failing_call_is_logged_not_raised() -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    assert asyncio.run(BoundedCall(fail, name="test-fail").run(1.0)) is True
