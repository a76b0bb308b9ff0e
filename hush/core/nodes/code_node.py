"""``CodeNode``: a node that calls a Python function, and the ``@code_node`` factory."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from hush.core.errors import GraphDefinitionError, NodeReturnError, NodeTimeoutError
from hush.core.nodes.base import BaseNode
from hush.core.policies import RetryPolicy

if TYPE_CHECKING:
    from hush.core.call import NodeCall

thread_pool: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "hush_thread_pool", default=None
)
"""Where sync code functions run: ``None`` is anyio's worker threads, kept for the event
loop's root task. A host whose loop has no such task (a Ray actor's, where anyio would
start and stop a thread per node) sets a pool of its own."""


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


class CodeNode(BaseNode):
    """Calls ``code_fn(**inputs)``; it returns a dict of outputs or ``None``.

    ``code_fn`` may be sync or async. A sync function runs in a worker thread so
    blocking code never stalls other branches; pass ``thread=False`` for tiny
    pure functions where the thread hop costs more than the work. A thread
    cannot be stopped: when a sync call times out, the node fails at once, but
    a retry starts only after the abandoned call has returned.
    """

    kind = "code"

    def __init__(
        self,
        name: str,
        code_fn: Callable[..., Any],
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
        thread: bool = True,
    ) -> None:
        if not callable(code_fn):
            raise GraphDefinitionError(
                f"CodeNode '{name}': code_fn must be callable, got {code_fn!r}"
            )
        if not isinstance(thread, bool):
            raise GraphDefinitionError(f"CodeNode '{name}': thread must be a bool, got {thread!r}")
        self.code_fn = code_fn
        self.is_async = _is_async(code_fn)
        self.thread = thread
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)

    def check(self) -> list[str]:
        """Inputs the function cannot accept and required parameters with no input."""
        try:
            sig = inspect.signature(self.code_fn)
        except (TypeError, ValueError):
            return []
        params = sig.parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            accepted = None
        else:
            accepted = {
                p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            }
        problems = []
        fn_name = getattr(self.code_fn, "__name__", "code_fn")
        if accepted is not None:
            for key in self.inputs:
                if key not in accepted:
                    problems.append(f"input '{key}' is not a parameter of {fn_name}{sig}")
        for p in params:
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                if p.name not in self.inputs:
                    problems.append(f"parameter '{p.name}' of {fn_name}{sig} has no input")
            elif p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
                problems.append(f"parameter '{p.name}' of {fn_name}{sig} is positional-only")
        return problems

    def describe_options(self) -> dict[str, Any]:
        """The function (its code is part of a checkpoint's fingerprint) and how it runs."""
        return {"code_fn": self.code_fn, "thread": self.thread}

    def times_itself(self) -> bool:
        """A sync function in a thread is timed from when its thread starts, not before."""
        return not self.is_async and self.thread

    def plain_call(self) -> Callable[..., Awaitable[Any]] | None:
        """An async function without retry or timeout is called directly by the scheduler."""
        if self.is_async and self.retry is None and self.timeout is None:
            return self.code_fn
        return None

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Call the function and check that it returned a dict or ``None``."""
        fn = self.code_fn
        if self.is_async:
            result = await fn(**inputs)
        elif self.thread:
            result = await _in_thread(functools.partial(fn, **inputs), call, self.timeout)
            if inspect.isawaitable(result):
                result = await _timed(result, self.timeout)
        else:
            result = fn(**inputs)
        if inspect.isawaitable(result):
            result = await result
        if result is None or isinstance(result, Mapping):
            return result
        raise NodeReturnError(
            f"CodeNode '{self.name}' returned {type(result).__name__}; "
            "code_fn must return a dict of outputs (or None)"
        )


async def _in_thread(fn: Callable[[], Any], call: NodeCall | None, timeout: float | None) -> Any:
    """Run ``fn`` in a worker thread; ``timeout`` counts from when the thread starts it.

    ``call`` learns when the thread ends, even if the attempt gave up on it, so that
    no retry overlaps it; a call abandoned before a worker thread was free never runs.
    """
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()
    finished: asyncio.Future[None] = loop.create_future()
    lock = threading.Lock()
    state = {"started": False, "abandoned": False}

    def target() -> Any:
        with lock:
            if state["abandoned"]:
                return None
            state["started"] = True
        _notify(loop, started)
        try:
            return fn()
        finally:
            _notify(loop, finished)

    if call is not None:
        call.track(finished)
    pool = thread_pool.get()
    job = asyncio.ensure_future(
        anyio.to_thread.run_sync(target, abandon_on_cancel=True)
        if pool is None
        else loop.run_in_executor(pool, contextvars.copy_context().run, target)
    )
    try:
        if timeout is None:
            return await job
        await asyncio.wait({started, job}, return_when=asyncio.FIRST_COMPLETED)
        try:
            async with asyncio.timeout(timeout) as scope:
                return await asyncio.shield(job)
        except TimeoutError:
            if scope.expired():
                raise NodeTimeoutError(f"timed out after {timeout:g}s") from None
            raise
    except BaseException:
        with lock:
            if not state["started"]:
                state["abandoned"] = True
                _set_done(finished)
        job.cancel()
        job.add_done_callback(_quiet)
        raise


async def _timed(work: Awaitable[Any], timeout: float | None) -> Any:
    """Await what a sync function returned, within the node's timeout."""
    if timeout is None:
        return await work
    try:
        async with asyncio.timeout(timeout) as scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise NodeTimeoutError(f"timed out after {timeout:g}s") from None
        raise


def _notify(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_done, future)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CodeNodeFactory:
    """What ``@code_node`` makes: call it to create a node; ``.fn`` is the function."""

    def __init__(self, fn: Callable[..., Any], **defaults: Any) -> None:
        self.fn = fn
        self.defaults = defaults
        functools.update_wrapper(self, fn)

    def __call__(
        self,
        *,
        name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> CodeNode:
        return CodeNode(
            name or self.fn.__name__,
            self.fn,
            inputs=inputs,
            outputs=outputs,
            **{**self.defaults, **options},
        )


def code_node(fn: Callable[..., Any] | None = None, **defaults: Any) -> Any:
    """Turn a function into a node factory: ``clean(inputs={...}, outputs={...})``.

    Used bare (``@code_node``) or with default node options
    (``@code_node(retry=3, timeout=10)``).
    """
    if fn is None:
        return lambda f: CodeNodeFactory(f, **defaults)
    return CodeNodeFactory(fn, **defaults)
