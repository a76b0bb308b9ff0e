"""The options of ``Hush.run`` that hold more than one value, as small validated objects.

Each is a frozen dataclass checked when it is made, in the style of httpx's ``Timeout``
and ``Limits``: a wrong value raises :class:`~hush.core.errors.RunOptionError` naming
the option and the value. The common case stays one keyword (``checkpoint="run.db"``,
``progress=False``); the object is for the rest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hush.core.errors import RunOptionError

if TYPE_CHECKING:
    from hush.core.progress import MapProgress

OnMismatch = Literal["error", "restart"]


@dataclass(frozen=True, slots=True)
class Labels:
    """Who and what a run is for: shown on its trace (``run_start`` metadata)."""

    user_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("user_id", "session_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise RunOptionError(f"{name} must be a string, got {describe_value(value)}")
        tags = self.tags
        if (
            isinstance(tags, str)
            or not isinstance(tags, Sequence)
            or not all(isinstance(t, str) for t in tags)
        ):
            raise RunOptionError(f"tags must be a list of strings, got {describe_value(tags)}")
        object.__setattr__(self, "tags", tuple(tags))
        if not isinstance(self.metadata, Mapping):
            raise RunOptionError(f"metadata must be a dict, got {describe_value(self.metadata)}")
        object.__setattr__(self, "metadata", dict(self.metadata))

    def as_metadata(self) -> dict[str, Any]:
        """The ``metadata`` of ``run_start``: user, session, tags and the run's metadata."""
        return {
            "user_id": self.user_id,
            "session_id": self.session_id,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where finished work is saved, and what to do with what an earlier run saved.

    ``on_mismatch="restart"`` starts the run over when the graph changed since it was
    saved (default: an error); ``restart=True`` starts it over whatever was saved.
    """

    path: str | os.PathLike[str]
    on_mismatch: OnMismatch = "error"
    restart: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.path, str | os.PathLike):
            raise RunOptionError(f"checkpoint must be a file path, got {describe_value(self.path)}")
        if self.on_mismatch not in ("error", "restart"):
            raise RunOptionError(
                "checkpoint on_mismatch must be 'error' or 'restart', "
                f"got {describe_value(self.on_mismatch)}"
            )
        if not isinstance(self.restart, bool):
            raise RunOptionError(
                f"checkpoint restart must be True or False, got {describe_value(self.restart)}"
            )


@dataclass(frozen=True, slots=True)
class Budget:
    """What the run's LLM calls may spend: ``max_cost`` in USD, ``max_total_tokens`` in
    prompt plus completion tokens. A call that does not fit is not sent."""

    max_cost: float | None = None
    max_total_tokens: int | None = None

    def __post_init__(self) -> None:
        cost, tokens = self.max_cost, self.max_total_tokens
        if cost is not None and (
            isinstance(cost, bool)
            or not isinstance(cost, int | float)
            or not (cost >= 0 and math.isfinite(cost))
        ):
            raise RunOptionError(
                f"max_cost must be a number of USD >= 0, got {describe_value(cost)}"
            )
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0
        ):
            raise RunOptionError(
                f"max_total_tokens must be an int >= 0, got {describe_value(tokens)}"
            )
        if cost is None and tokens is None:
            raise RunOptionError("Budget() sets no limit: give max_cost, max_total_tokens or both")


ProgressCallback = Callable[[list["MapProgress"]], Any]
"""Receives the progress of every map, a few times a second."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Live progress of the run's maps: bars on stderr (``show``; ``None``: when stderr is a
    terminal) and/or ``on_update``, called with the counters a few times a second."""

    show: bool | None = None
    on_update: ProgressCallback | None = None

    def __post_init__(self) -> None:
        if self.show is not None and not isinstance(self.show, bool):
            raise RunOptionError(
                f"progress must be True, False or None, got {describe_value(self.show)}"
            )
        if self.on_update is not None and not callable(self.on_update):
            raise RunOptionError(
                f"progress on_update must be callable, got {describe_value(self.on_update)}"
            )


def positive_int(name: str, value: Any) -> int | None:
    """``value`` if it is ``None`` or an int >= 1, else a :class:`RunOptionError` naming ``name``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise RunOptionError(f"{name} must be a positive int, got {describe_value(value)}")
    return value


def describe_value(value: Any) -> str:
    """A value for an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
