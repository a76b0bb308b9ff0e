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
:class:`~hush.core.call.NodeCall` of the attempt that runs them; the node merges
that attempt's :class:`~hush.core.outcome.Outcome` (errors, snapshots) into its
graph's only from the attempt it accepts. Step 3 is :mod:`hush.core.attempts`.

A map item (:func:`hush.core.items.run_item`) takes the same steps without
slot or retries: look up, run the body, save, and hand its outcome to the map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from hush.core.attempts import STOPS, Done, attempts, checked, failure, stray
from hush.core.errors import NodeError, NodeInputError
from hush.core.events import Event, SpanType, node_end, node_start
from hush.core.inputs import ERROR, OK, resolve_inputs

if TYPE_CHECKING:
    from hush.core.plan import NodePlan
    from hush.core.runtime import Frame

logger = logging.getLogger("hush.runtime")


def run_node(frame: Frame, i: int) -> Coroutine[Any, Any, None]:
    """The lifecycle of node ``i`` of ``frame``, to await (or to step: see the scheduler)."""
    np = frame.plan.nodes[i]
    if np.plain is not None and frame.fast:
        if frame.run.emit is None:
            return _run_plain(frame, np)
        return _run_plain_observed(frame, np)
    return _run_full(frame, np)


async def _run_full(frame: Frame, np: NodePlan) -> None:
    """Every step, for any node."""
    emit = frame.run.emit
    if emit is not None and emit.backpressure is not None:
        await emit.backpressure()
    path = frame.path_of(np)
    started = perf_counter()
    try:
        inputs = resolve_inputs(frame, np)
    except NodeInputError as exc:
        inputs = {}
        done = Done(ERROR, error=NodeError.from_exception(exc, path))
    else:
        done = await _reuse_or_run(frame, np, path, inputs)
    _accept(frame, np, path, done)
    await _save(frame, np, path, done)
    _record(frame, np, done, started)


async def _run_plain(frame: Frame, np: NodePlan) -> None:
    """The same steps for an async code node when nothing is traced, saved or limited."""
    assert np.plain is not None
    i = np.index
    started = perf_counter()
    try:
        out = await np.plain(**resolve_inputs(frame, np))
        if np.outputs or type(out) is not dict:
            out = checked(np, out)
    except asyncio.CancelledError as exc:
        _accept(frame, np, frame.path_of(np), failure(stray(exc), frame.path_of(np), None))
    except STOPS:
        raise
    except BaseException as exc:
        _accept(frame, np, frame.path_of(np), failure(exc, frame.path_of(np), None))
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
    if emit.backpressure is not None:
        await emit.backpressure()
    path = frame.path_of(np)
    started = perf_counter()
    try:
        inputs = resolve_inputs(frame, np)
    except NodeInputError as exc:
        unread = Done(ERROR, error=NodeError.from_exception(exc, path))
        _accept(frame, np, path, unread)
        _record(frame, np, unread, started)
        return
    emit(node_start(path, frame.run.run_id, frame.prefix, "node", np.name, inputs, np.path))
    done: Done | None = None
    try:
        try:
            out = await np.plain(**inputs)
            if np.outputs or type(out) is not dict:
                out = checked(np, out)
        except asyncio.CancelledError as exc:
            done = failure(stray(exc), path, None)
        except STOPS:
            raise
        except BaseException as exc:
            done = failure(exc, path, None)
        else:
            done = Done(OK, out)
    finally:
        emit(_node_end(frame, np, path, done, perf_counter() - started))
    assert done is not None
    _accept(frame, np, path, done)
    _record(frame, np, done, started)


async def _reuse_or_run(frame: Frame, np: NodePlan, path: str, inputs: dict[str, Any]) -> Done:
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
        done = await attempts(frame, np, path, inputs)
        done.key = key
        return done
    run_id = frame.run.run_id
    started = perf_counter()
    kind: SpanType = np.node.trace_kind  # type: ignore[assignment]
    emit(node_start(path, run_id, frame.prefix, kind, np.name, inputs, np.path))
    ended: Done | None = None
    try:
        ended = await attempts(frame, np, path, inputs)
        ended.key = key
        return ended
    finally:
        emit(_node_end(frame, np, path, ended, perf_counter() - started))


def _node_end(frame: Frame, np: NodePlan, path: str, done: Done | None, duration: float) -> Event:
    kind: SpanType = np.node.trace_kind  # type: ignore[assignment]
    if done is None:
        return node_end(
            path, frame.run.run_id, frame.prefix, kind, np.name, None, None, duration, np.path, True
        )
    call = done.call
    return node_end(
        path,
        frame.run.run_id,
        frame.prefix,
        kind,
        np.name,
        done.outputs,
        done.error,
        duration,
        np.path,
        False,
        call.attempt if call is not None else None,
    )


def _accept(frame: Frame, np: NodePlan, path: str, done: Done) -> None:
    """Step 4: write the outputs or the error into the graph; merge what the attempt reported."""
    i = np.index
    call = done.call
    outcome = frame.outcome
    if call is not None and not done.clean:
        outcome.merge(call.outcome)
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
        outcome.fail(error, handled=np.error_handled)
    elif np.error_handled:
        outcome.handle(error)
    for src, dst in np.outputs:
        if src == "error":
            frame.state[dst] = frame.written[dst] = error
    if not np.error_handled and frame.first_error is None:
        frame.first_error = error
    level = logging.DEBUG if frame.in_item else logging.WARNING
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
    if frame.in_item:
        snapshot = checkpoint.snapshot_of(path, done.key, done.outputs)
        if snapshot is not None:
            frame.outcome.keep(snapshot)
    else:
        await checkpoint.saved(path, checkpoint.save(path, done.key, done.outputs, rest=True))


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
