"""Tracing: the tracer interface and its implementations.

``LangfuseTracer`` needs the ``langfuse`` package (``pip install 'hush[langfuse]'``);
it is imported on first use, so this package imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hush.observability.local import LocalTracer, read_trace
from hush.observability.memory import MemoryTracer
from hush.observability.tracer import Generation, Span, SpanKind, Tracer
from hush.observability.tree import format_tree

if TYPE_CHECKING:
    from hush.observability.langfuse import LangfuseTracer

__all__ = [
    "Generation",
    "LangfuseTracer",
    "LocalTracer",
    "MemoryTracer",
    "Span",
    "SpanKind",
    "Tracer",
    "format_tree",
    "read_trace",
]


def __getattr__(name: str) -> Any:
    if name == "LangfuseTracer":
        try:
            from hush.observability.langfuse import LangfuseTracer
        except ImportError as exc:
            raise ImportError(
                "LangfuseTracer needs the langfuse package: pip install 'hush[langfuse]'"
            ) from exc
        return LangfuseTracer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
