"""Attempting one node: the retry loop, one attempt, and how its end is classified.

An attempt takes the run-wide slot (leaves only), starts its timeout, runs the
node's work and classifies how it ended: ok, error, timeout (a
``CancelledError`` nobody asked for is an error). Between attempts the slot is
free while the node backs off. The result is a :class:`Done`; the lifecycle
(:mod:`hush.core.lifecycle`) writes it into the graph.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hush.core.call import NodeCall
from hush.core.errors import (
    NodeCancelledError,
    NodeError,
    NodeFailedError,
    NodeInputError,
    NodeReturnError,
    NodeTimeoutError,
)
from hush.core.inputs import ERROR, OK

if TYPE_CHECKING:
    from hush.core.plan import NodePlan
    from hush.core.runtime import Frame
    from hush.core.state import Status

logger = logging.getLogger("hush.runtime")

STOPS = (KeyboardInterrupt, SystemExit, asyncio.CancelledError)
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
        """The accepted attempt; what ran inside it is on its ``outcome``."""
        self.own = own
        """The error is this node's own, not one carried up from inside it."""
        self.resumed = resumed
        self.key: str | None = None

    @property
    def clean(self) -> bool:
        """Succeeded with nothing failing inside: may be saved and reused."""
        return self.status == OK and (self.call is None or not self.call.outcome.errors)


async def attempts(frame: Frame, np: NodePlan, path: str, inputs: dict[str, Any]) -> Done:
    """Attempt until success, a non-retryable error, or the policy's last attempt.

    With a retry policy every attempt gets its own (shallow) copy of the inputs,
    so nothing one attempt writes into them reaches the next.
    """
    node = np.node
    policy = None if node.owns_policy else node.retry
    attempt = 1
    while True:
        call = NodeCall(frame, np, path, attempt)
        try:
            out = await _attempt(frame, np, call, inputs if policy is None else dict(inputs))
        except STOPS:
            raise
        except BaseException as exc:
            if policy is None or attempt >= policy.attempts or not policy.retries(exc):
                return failure(exc, path, call)
            await call.threads_ended()
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
    return checked(np, out)


async def _guarded(work: Any) -> Any:
    """Await the node's work; a ``CancelledError`` nobody asked for becomes its error."""
    try:
        return await work
    except asyncio.CancelledError as exc:
        raise stray(exc) from exc


def stray(exc: asyncio.CancelledError) -> NodeCancelledError:
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


def checked(np: NodePlan, out: Any) -> Mapping[str, Any]:
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
    result: Mapping[str, Any] = out
    return result


def failure(exc: BaseException, path: str, call: NodeCall | None) -> Done:
    """The :class:`Done` of work that raised ``exc`` (an error carried up stays not own)."""
    if isinstance(exc, NodeFailedError):
        return Done(ERROR, error=exc.error, call=call, own=False)
    return Done(ERROR, error=NodeError.from_exception(exc, path), call=call)
