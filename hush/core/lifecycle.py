"""The node-attempt lifecycle: what happens to one node, and to one map item.

A node, in one execution of its graph (:func:`run_node`):

1. resolve its inputs;
2. look up the checkpoint, by the node's path and a digest of those inputs;
3. attempt, as often as its retry policy allows for a retryable error:
   take the run-wide slot (leaves only) → start the attempt's timeout → run →
   classify (ok, error, timeout; a ``CancelledError`` that nobody asked for is
   an error); between attempts the slot is free while it backs off;
4. write its outputs (or its error) into the graph state;
5. save it, if nothing inside it failed;
6. record it.

Once the inputs are known it emits ``node_start``, and ``node_end`` in
``finally`` with a status: ok, error, timeout or cancelled (see
:mod:`hush.core.events`). A container's children report to the
:class:`NodeCall` of the attempt that runs them; the node merges what they
report (errors, deferred saves) only from the attempt it accepts.

A map item (:func:`hush.core.items.run_item`) takes the same steps without
slot or retries: look up, run the body, save, and hand its outcome to the map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from hush.core import call as call_module
from hush.core.errors import (
    NodeCancelledError,
    NodeError,
    NodeFailedError,
    NodeInputError,
    NodeReturnError,
    NodeTimeoutError,
)
from hush.core.events import Event, status_of
from hush.core.inputs import ERROR, OK, resolve, resolve_inputs

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.plan import NodePlan
    from hush.core.runtime import Frame
    from hush.core.state import Status

logger = logging.getLogger("hush.runtime")

_STOPS = (KeyboardInterrupt, SystemExit, asyncio.CancelledError)
"""What stops the run instead of failing one node (a cancellation nobody asked for is
turned into an error before it gets here)."""


class Done:
    """How a node's work ended: its outputs or error, and the attempt that produced them."""

    __slots__ = ("call", "error", "key", "outputs", "own", "resumed", "status")

    def __init__(
        self,
        status: Status,
        outputs: Mapping[str, Any] | None = None,
        error: NodeError | None = None,
        call: NodeCall | None = None,
        *,
        own: bool = True,
        resumed: bool = False,
    ) -> None:
        self.status = status
        self.outputs = outputs
        self.error = error
        self.call = call
        self.own = own
        """The error is this node's own, not one carried up from inside it."""
        self.resumed = resumed
        self.key: str | None = None

    @property
    def clean(self) -> bool:
        """Succeeded with nothing failing inside: may be saved and reused."""
        return self.status == OK and (self.call is None or not self.call.errors)


async def run_node(frame: Frame, i: int) -> None:
    """Take node ``i`` of ``frame`` through its lifecycle."""
    np = frame.plan.nodes[i]
    emit = frame.run.emit
    if emit is not None and emit.backpressure is not None:
        await emit.backpressure()
    if np.plain is not None and frame.fast:
        if emit is None:
            await _run_plain(frame, np)
        else:
            await _run_plain_observed(frame, np)
        return
    path = frame.path_of(np)
    started = perf_counter()
    try:
        inputs = resolve_inputs(frame, np)
    except NodeInputError as exc:
        inputs = {}
        done = Done(ERROR, error=NodeError.from_exception(exc, path))
    else:
        done = await _settle(frame, np, path, inputs)
    _accept(frame, np, path, done)
    await _save(frame, np, path, done)
    _record(frame, np, done, started)


async def _run_plain(frame: Frame, np: NodePlan) -> None:
    """The same steps for an async code node when nothing is traced, saved or limited."""
    assert np.plain is not None
    i = np.index
    started = perf_counter()
    try:
        out = await np.plain(**{b.name: resolve(frame, b) for b in np.bindings})
        if np.outputs or type(out) is not dict:
            out = _checked(np, out)
    except asyncio.CancelledError as exc:
        _accept(frame, np, frame.path_of(np), _failure(_stray(exc), frame.path_of(np), None))
    except _STOPS:
        raise
    except BaseException as exc:
        _accept(frame, np, frame.path_of(np), _failure(exc, frame.path_of(np), None))
    else:
        frame.outputs[i] = out
        frame.status[i] = OK
        if np.outputs:
            _write(frame, np, out)
    log = frame.log
    if log is not None:
        log.started[i] = started
        log.ended[i] = perf_counter()
        log.attempts[i] = 1
        frame.run.record.order.append(np.path)


async def _run_plain_observed(frame: Frame, np: NodePlan) -> None:
    """The fast path with its ``node_start`` and ``node_end`` events."""
    assert np.plain is not None and frame.run.emit is not None
    emit = frame.run.emit
    path = frame.path_of(np)
    started = perf_counter()
    inputs = {b.name: resolve(frame, b) for b in np.bindings}
    emit(
        Event(
            "node_start",
            path,
            frame.run.run_id,
            parent=frame.prefix,
            type="node",
            name=np.name,
            input=inputs,
            node=np.path,
        )
    )
    done: Done | None = None
    try:
        try:
            out = await np.plain(**inputs)
            if np.outputs or type(out) is not dict:
                out = _checked(np, out)
        except asyncio.CancelledError as exc:
            done = _failure(_stray(exc), path, None)
        except _STOPS:
            raise
        except BaseException as exc:
            done = _failure(exc, path, None)
        else:
            done = Done(OK, out)
    finally:
        emit(_node_end(frame, np, path, done, perf_counter() - started))
    assert done is not None
    _accept(frame, np, path, done)
    _record(frame, np, done, started)


async def _settle(frame: Frame, np: NodePlan, path: str, inputs: dict[str, Any]) -> Done:
    """Steps 2 and 3: the saved result for these inputs, or the result of the attempts."""
    checkpoint = frame.run.checkpoint
    key = None
    if checkpoint is not None:
        key = checkpoint.key(path, inputs)
        saved = checkpoint.load(path, key) if frame.lookups else None
        if saved is not None:
            return Done(OK, saved, resumed=True)
    emit = frame.run.emit
    if emit is None:
        done = await _attempts(frame, np, path, inputs)
        done.key = key
        return done
    run_id = frame.run.run_id
    started = perf_counter()
    emit(
        Event(
            "node_start",
            path,
            run_id,
            parent=frame.prefix,
            type=np.node.trace_kind,  # type: ignore[arg-type]
            name=np.name,
            input=inputs,
            node=np.path,
        )
    )
    ended: Done | None = None
    try:
        ended = await _attempts(frame, np, path, inputs)
        ended.key = key
        return ended
    finally:
        emit(_node_end(frame, np, path, ended, perf_counter() - started))


def _node_end(frame: Frame, np: NodePlan, path: str, done: Done | None, duration: float) -> Event:
    error = done.error if done is not None else None
    return Event(
        "node_end",
        path,
        frame.run.run_id,
        parent=frame.prefix,
        type=np.node.trace_kind,  # type: ignore[arg-type]
        name=np.name,
        output=done.outputs if done is not None else None,
        status=status_of(error, cancelled=done is None),
        error=error,
        duration=duration,
        attempts=done.call.attempt if done is not None and done.call is not None else None,
        node=np.path,
    )


async def _attempts(frame: Frame, np: NodePlan, path: str, inputs: dict[str, Any]) -> Done:
    """Attempt until success, a non-retryable error, or the policy's last attempt.

    With a retry policy every attempt gets its own (shallow) copy of the inputs,
    so nothing one attempt writes into them reaches the next.
    """
    node = np.node
    policy = None if node.owns_policy else node.retry
    attempt = 1
    while True:
        call = call_module.NodeCall(frame, np, path, attempt)
        try:
            out = await _attempt(frame, np, call, inputs if policy is None else dict(inputs))
        except _STOPS:
            raise
        except BaseException as exc:
            if policy is None or attempt >= policy.attempts or not policy.retries(exc):
                return _failure(exc, path, call)
            await call.settled()
            delay = policy.delay(attempt)
            logger.info(
                "node %s attempt %d failed (%s: %s); retrying in %.2fs",
                path,
                attempt,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1
        else:
            return Done(OK, out, call=call)


async def _attempt(
    frame: Frame, np: NodePlan, call: NodeCall, inputs: dict[str, Any]
) -> Mapping[str, Any]:
    """One attempt: the slot, then the timeout, then the node's own work."""
    node = np.node
    slot = frame.run.slot if np.is_leaf else None
    if slot is not None:
        await slot.acquire()
    try:
        timeout = None if node.times_itself() else node.timeout
        if timeout is None:
            out = await _guarded(node.run(inputs, call))
        else:
            try:
                async with asyncio.timeout(timeout) as scope:
                    out = await _guarded(node.run(inputs, call))
            except TimeoutError:
                if scope.expired():
                    raise NodeTimeoutError(f"timed out after {timeout:g}s") from None
                raise
    finally:
        if slot is not None:
            slot.release()
    return _checked(np, out)


async def _guarded(work: Any) -> Any:
    """Await the node's work; a ``CancelledError`` nobody asked for becomes its error."""
    try:
        return await work
    except asyncio.CancelledError as exc:
        raise _stray(exc) from exc


def _stray(exc: asyncio.CancelledError) -> NodeCancelledError:
    """Re-raise a cancellation of this task; turn one nobody asked for into an error."""
    task = asyncio.current_task()
    if task is None or task.cancelling():
        raise exc
    error = NodeCancelledError(
        "raised CancelledError although neither the run nor this node was cancelled "
        "(it awaited a task or future that something else cancelled)"
    )
    error.__cause__ = exc
    return error


def _checked(np: NodePlan, out: Any) -> Mapping[str, Any]:
    """Classify what the node returned: a dict with every declared output, or its error."""
    if out is None:
        out = {}
    elif not isinstance(out, Mapping):
        raise NodeReturnError(
            f"{type(np.node).__name__} '{np.name}' returned {type(out).__name__}; "
            "it must return a dict of outputs (or None)"
        )
    for src, dst in np.outputs:
        if src != "*" and src != "error" and src not in out:
            have = ", ".join(sorted(map(str, out))) or "nothing"
            raise NodeInputError(
                f"output '{src}' is mapped to PARENT['{dst}'] but the node returned no '{src}' "
                f"(it returned: {have})"
            )
    checked: Mapping[str, Any] = out
    return checked


def _failure(exc: BaseException, path: str, call: NodeCall | None) -> Done:
    if isinstance(exc, NodeFailedError):
        return Done(ERROR, error=exc.error, call=call, own=False)
    return Done(ERROR, error=NodeError.from_exception(exc, path), call=call)


def _accept(frame: Frame, np: NodePlan, path: str, done: Done) -> None:
    """Step 4: write the outputs or the error into the graph; merge what the attempt reported."""
    i = np.index
    call = done.call
    if call is not None and not done.clean:
        frame.errors.extend(call.errors)
        frame.unhandled.extend(call.unhandled)
        frame.saves.extend(call.saves)
    if done.status == OK:
        out = done.outputs
        assert out is not None
        frame.outputs[i] = out
        frame.status[i] = OK
        _write(frame, np, out)
        return
    error = done.error
    assert error is not None
    frame.node_errors[i] = error
    frame.status[i] = ERROR
    if done.own:
        frame.errors.append(error)
        if not np.error_handled:
            frame.unhandled.append(error)
    elif np.error_handled:
        frame.unhandled = [e for e in frame.unhandled if e is not error]
    for src, dst in np.outputs:
        if src == "error":
            frame.state[dst] = frame.written[dst] = error
    if not np.error_handled and frame.first_error is None:
        frame.first_error = error
    level = logging.WARNING if frame.static else logging.DEBUG
    logger.log(level, "node %s failed: %s: %s", path, error.type, error.message)


def _write(frame: Frame, np: NodePlan, out: Mapping[str, Any]) -> None:
    state, written = frame.state, frame.written
    for src, dst in np.outputs:
        if src == "*":
            if dst == "*":
                state.update(out)
                written.update(out)
            else:
                state[dst] = written[dst] = dict(out)
        else:
            state[dst] = written[dst] = out.get(src)


async def _save(frame: Frame, np: NodePlan, path: str, done: Done) -> None:
    """Step 5: save a clean result now, or (inside a map item) take a snapshot of it that
    is written only if the item does not end clean."""
    checkpoint = frame.run.checkpoint
    if checkpoint is None or not done.clean or done.resumed:
        return
    assert done.outputs is not None
    if frame.defer:
        snapshot = checkpoint.snapshot(path, done.key, done.outputs)
        if snapshot is not None:
            frame.saves.append(snapshot)
    else:
        await checkpoint.save(path, done.key, done.outputs)


def _record(frame: Frame, np: NodePlan, done: Done, started: float) -> None:
    """Step 6: nodes outside map items are noted on the run record one by one."""
    log = frame.log
    if log is None:
        return
    i = np.index
    call = done.call
    log.started[i] = started
    log.ended[i] = perf_counter()
    log.attempts[i] = call.attempt if call is not None else (0 if done.resumed else 1)
    log.resumed[i] = done.resumed
    frame.run.record.order.append(np.path)
