"""Failures of the Ray path as hush errors: the user's exception first, short, without Ray's
colour codes, actor ids or wrapped tracebacks, one per item."""

from __future__ import annotations

import re

from hush.core.errors import NodeError, qualified_name
from hush.core.redaction import redact

MAX_MESSAGE = 500
"""Characters of the cause's message kept (the whole error stays under 600)."""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CODE_HINT = (
    "the Ray worker cannot load the map's code: ship it with "
    "RayExecutor(runtime_env={'working_dir': ...}) or install it on the cluster"
)


def root_cause(exc: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (``RayTaskError.cause``, ``__cause__``)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or getattr(exc, "client_exc", None)
        if isinstance(inner, BaseException):
            exc = inner
            continue
        if exc.__cause__ is not None and type(exc).__module__.startswith("ray"):
            exc = exc.__cause__
            continue
        break
    return exc


def clean(text: str) -> str:
    """``text`` without colour codes, on one line when it is Ray's, cut to a readable size."""
    text = _ANSI.sub("", text).strip()
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3].rstrip() + "..."
    return redact(text)


def describe(exc: BaseException) -> tuple[str, str, tuple[str, ...]]:
    """The type name, a clean message and the qualified class names of ``exc``'s cause."""
    cause = root_cause(exc)
    message = str(cause)
    if type(cause).__module__.startswith("ray"):
        # Ray's own errors carry the remote traceback; its last line says what failed.
        lines = [line for line in _ANSI.sub("", message).splitlines() if line.strip()]
        message = lines[-1] if lines else type(cause).__name__
    kinds = tuple(qualified_name(k) for k in type(cause).__mro__)
    return type(cause).__name__, clean(message), kinds


def item_error(path: str, exc: BaseException, *, context: str = "") -> NodeError:
    """The item at ``path`` failed in Ray with ``exc`` (``context`` says where)."""
    kind, message, kinds = describe(exc)
    if context:
        message = f"{message} ({context})"
    return NodeError(type=kind, message=message, node=path, retryable=False, kinds=kinds)


def load_error(exc: BaseException) -> NodeError:
    """A worker could not load a body (its code cannot be imported there)."""
    return item_error("", exc, context=CODE_HINT)


def lost_error(path: str, attempts: int, exc: BaseException) -> NodeError:
    """The item's worker died on every attempt."""
    _, message, _ = describe(exc)
    return NodeError(
        type="RayWorkerLost",
        message=clean(
            f"its Ray worker died on each of {attempts} attempts (last: {message}); "
            "raise max_item_retries if workers are preempted, or look for what kills them"
        ),
        node=path,
        retryable=True,
        kinds=("hush.distributed.RayWorkerLost",),
    )
