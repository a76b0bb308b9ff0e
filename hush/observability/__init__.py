"""Tracing: tracers subscribe to a run's events (:mod:`hush.core.events`) and export them.

``LocalTracer`` and ``MemoryTracer`` need nothing else. ``OTLPTracer`` (any
OTLP/HTTP backend) and ``OTelTracer`` need OpenTelemetry, ``LangfuseTracer``
needs the ``langfuse`` package (``pip install 'hush[langfuse]'``, which brings
OpenTelemetry too); they are imported on first use, so this package imports
without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hush.observability.local import LocalTracer, read_trace
from hush.observability.memory import MemoryTracer
from hush.observability.tracer import Tracer
from hush.observability.tree import format_tree

if TYPE_CHECKING:
    from hush.observability.langfuse import LangfuseTracer
    from hush.observability.otel import OTelTracer
    from hush.observability.otlp import OTLPTracer

__all__ = [
    "LangfuseTracer",
    "LocalTracer",
    "MemoryTracer",
    "OTLPTracer",
    "OTelTracer",
    "Tracer",
    "format_tree",
    "read_trace",
]

_LAZY = {
    "LangfuseTracer": ("hush.observability.langfuse", "pip install 'hush[langfuse]'"),
    "OTLPTracer": ("hush.observability.otlp", "pip install 'hush[otel]'"),
    "OTelTracer": ("hush.observability.otel", "pip install 'hush[otel]'"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, install = _LAZY[name]
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ImportError(f"{name} needs packages that are not installed: {install}") from exc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
