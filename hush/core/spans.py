"""Opening and closing a node's or item's span, never letting a tracer failure escape."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hush.core.errors import NodeError, NodeTimeoutError

if TYPE_CHECKING:
    from hush.observability.tracer import Span

logger = logging.getLogger("hush.runtime")


def open_span(parent: Span | None, name: str, kind: Any, payload: Any) -> Span | None:
    """A child span of ``parent`` (``None`` when not tracing or when the tracer fails)."""
    if parent is None:
        return None
    try:
        return parent.child(name, kind=kind, input=payload)
    except Exception:
        logger.warning("tracer failed to start span %s", name, exc_info=True)
        return None


def end_span(span: Span, output: Any, error: NodeError | None, *, cancelled: bool) -> None:
    """Close a span with its status: ok, error, timeout or cancelled."""
    if cancelled:
        status = "cancelled"
    elif error is None:
        status = "ok"
    else:
        status = "timeout" if error.type == NodeTimeoutError.__name__ else "error"
    try:
        span.end(output=output, error=_TracedError(error) if error else None, status=status)
    except Exception:
        logger.warning("tracer failed to end a span", exc_info=True)


class _TracedError(Exception):
    """Carries a :class:`NodeError` to a tracer as an exception."""

    def __init__(self, error: NodeError) -> None:
        self.error = error
        super().__init__(f"{error.type}: {error.message}")
