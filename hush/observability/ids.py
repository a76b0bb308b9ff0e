"""Identifiers shared by all tracers, so a run has the same trace id everywhere."""

from __future__ import annotations

import hashlib
import random

_ids = random.Random()


def trace_id_for(run_id: str) -> str:
    """The 32-hex-digit trace id of a run: the same as Langfuse's ``create_trace_id(seed=run_id)``."""
    return hashlib.sha256(run_id.encode("utf-8")).digest()[:16].hex()


def new_span_id() -> int:
    """A random non-zero 64-bit span id (unique, not secret: no need for ``os.urandom``)."""
    return _ids.getrandbits(64) or 1
