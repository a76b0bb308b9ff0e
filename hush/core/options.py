"""The options of one ``Hush.run``, checked and gathered in a :class:`RunOptions`.

:func:`run_options` takes the keywords of ``Hush.run`` and raises
:class:`~hush.core.errors.RunOptionError` naming the first one that is wrong.
:func:`translate_deprecated` accepts the keywords of earlier releases (``max_cost``,
``user_id``, ``restart``...), with one ``DeprecationWarning`` naming the new spelling.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hush.core.errors import RunOptionError
from hush.core.run_options import (
    Budget,
    Checkpoint,
    Labels,
    Progress,
    describe_value,
    positive_int,
)

if TYPE_CHECKING:
    from hush.core.executor import ItemExecutor
    from hush.core.run_events import Tracer

__all__ = [
    "DEFAULT_OPTIONS",
    "RunOptions",
    "describe_value",
    "run_options",
    "translate_deprecated",
]

_NO_LABELS = Labels()
_DEFAULT_PROGRESS = Progress()


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything one run was asked for, checked (see ``Hush.run``)."""

    run_id: str | None = None
    tracer: Tracer | None = None
    labels: Labels = _NO_LABELS
    checkpoint: Checkpoint | None = None
    budget: Budget | None = None
    cache: Any = None
    """``True``, a path or a cache object: resolved by the extension that serves it."""
    progress: Progress = _DEFAULT_PROGRESS
    max_running_nodes: int | None = None
    executor: ItemExecutor | None = None
    raise_on_error: bool = False
    flush_timeout: float | None = None
    """Given only by the deprecated ``flush_timeout`` keyword (tracers have their own)."""


DEFAULT_OPTIONS = RunOptions()
"""The options of ``Hush.run(inputs)`` called with none (checked once, not per run)."""


def run_options(
    *,
    run_id: Any = None,
    tracer: Any = None,
    labels: Any = None,
    checkpoint: Any = None,
    budget: Any = None,
    cache: Any = None,
    progress: Any = None,
    max_running_nodes: Any = None,
    executor: Any = None,
    raise_on_error: Any = False,
    flush_timeout: Any = None,
) -> RunOptions:
    """The checked options of a run; the first wrong one raises :class:`RunOptionError`."""
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise RunOptionError(f"run_id must be a non-empty string, got {describe_value(run_id)}")
    if tracer is not None and not (hasattr(tracer, "subscribe") and hasattr(tracer, "flush")):
        raise RunOptionError(
            f"tracer must be a tracer (with subscribe and flush), got {describe_value(tracer)}"
        )
    if labels is None:
        labels = _NO_LABELS
    elif not isinstance(labels, Labels):
        raise RunOptionError(f"labels must be a Labels(...), got {describe_value(labels)}")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint(checkpoint)
    if budget is not None and not isinstance(budget, Budget):
        raise RunOptionError(f"budget must be a Budget(...), got {describe_value(budget)}")
    if cache is False:
        cache = None
    if progress is None or isinstance(progress, bool):
        progress = _DEFAULT_PROGRESS if progress is None else Progress(show=progress)
    elif not isinstance(progress, Progress):
        if not callable(progress):
            raise RunOptionError(
                "progress must be True, False or None, a callable, or a Progress(...), "
                f"got {describe_value(progress)}"
            )
        progress = Progress(on_update=progress)
    positive_int("max_running_nodes", max_running_nodes)
    if executor is not None:
        from hush.core.executor import ItemExecutor

        if not isinstance(executor, ItemExecutor):
            raise RunOptionError(
                "executor must be an item executor such as RayExecutor(...), "
                f"got {describe_value(executor)}"
            )
    if not isinstance(raise_on_error, bool):
        raise RunOptionError(
            f"raise_on_error must be True or False, got {describe_value(raise_on_error)}"
        )
    if flush_timeout is not None and (
        isinstance(flush_timeout, bool)
        or not isinstance(flush_timeout, int | float)
        or not (flush_timeout >= 0 and math.isfinite(flush_timeout))
    ):
        raise RunOptionError(
            f"flush_timeout must be a number of seconds >= 0, got {describe_value(flush_timeout)}"
        )
    return RunOptions(
        run_id,
        tracer,
        labels,
        checkpoint,
        budget,
        cache,
        progress,
        max_running_nodes,
        executor,
        raise_on_error,
        flush_timeout,
    )


DEPRECATED = {
    "max_concurrency": "max_running_nodes=N",
    "user_id": "labels=Labels(user_id=...)",
    "session_id": "labels=Labels(session_id=...)",
    "tags": "labels=Labels(tags=[...])",
    "metadata": "labels=Labels(metadata={...})",
    "on_checkpoint_mismatch": "checkpoint=Checkpoint(path, on_mismatch=...)",
    "restart": "checkpoint=Checkpoint(path, restart=True)",
    "on_progress": "progress=Progress(on_update=...) or progress=callable",
    "max_cost": "budget=Budget(max_cost=...)",
    "max_total_tokens": "budget=Budget(max_total_tokens=...)",
    "flush_timeout": "the tracer's own flush_timeout (e.g. LocalTracer(flush_timeout=...))",
}
"""The keywords ``Hush.run`` took before, and their new spelling."""

_GROUPS = {
    "labels": ("user_id", "session_id", "tags", "metadata"),
    "budget": ("max_cost", "max_total_tokens"),
    "max_running_nodes": ("max_concurrency",),
}


def translate_deprecated(where: str, given: Mapping[str, Any]) -> RunOptions:
    """The options of a call that used deprecated keywords: each is checked under its old
    name and moved to its new place; giving an option both ways is a ``RunOptionError``;
    one ``DeprecationWarning`` names the new spellings (``where``: ``"Hush.run"``)."""
    new = {k: v for k, v in given.items() if k not in DEPRECATED}
    old = {k: v for k, v in given.items() if k in DEPRECATED}
    warnings.warn(
        f"{where}(): "
        + "; ".join(f"{k}= is deprecated, use {DEPRECATED[k]}" for k in old)
        + " (see docs/operating.md, 'Run options')",
        DeprecationWarning,
        stacklevel=3,
    )
    for option, keywords in _GROUPS.items():
        both = [k for k in keywords if old.get(k) is not None]
        if both and new.get(option) is not None:
            raise RunOptionError(
                f"{option}= and {'/'.join(both)}= are the same option; give only {option}="
            )
    new.update(_translated(old, new))
    unknown = set(new) - set(RunOptions.__slots__)
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    return run_options(**new)


def _translated(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The new-spelling options for the deprecated ``old`` ones (checked under old names)."""
    out: dict[str, Any] = {}
    if "max_concurrency" in old:
        out["max_running_nodes"] = positive_int("max_concurrency", old["max_concurrency"])
    if any(k in old for k in _GROUPS["labels"]):
        out["labels"] = Labels(
            user_id=old.get("user_id"),
            session_id=old.get("session_id"),
            tags=old.get("tags") or (),
            metadata=old.get("metadata") or {},
        )
    if old.get("max_cost") is not None or old.get("max_total_tokens") is not None:
        out["budget"] = Budget(old.get("max_cost"), old.get("max_total_tokens"))
    if "on_progress" in old:
        out["progress"] = _progress(new.get("progress"), old["on_progress"])
    if "on_checkpoint_mismatch" in old or "restart" in old:
        out["checkpoint"] = _checkpoint(
            new.get("checkpoint"), old.get("on_checkpoint_mismatch", "error"), old.get("restart")
        )
    if "flush_timeout" in old:
        out["flush_timeout"] = old["flush_timeout"]
    return out


def _progress(progress: Any, on_update: Any) -> Any:
    if on_update is None:
        return progress
    if not callable(on_update):
        raise RunOptionError(f"on_progress must be callable, got {describe_value(on_update)}")
    if progress is not None and not isinstance(progress, bool):
        raise RunOptionError("progress= and on_progress= are the same option; give only progress=")
    return Progress(show=progress, on_update=on_update)


def _checkpoint(checkpoint: Any, on_mismatch: Any, restart: Any) -> Checkpoint | None:
    if on_mismatch not in ("error", "restart"):
        raise RunOptionError(
            "on_checkpoint_mismatch must be 'error' or 'restart', "
            f"got {describe_value(on_mismatch)}"
        )
    if restart is not None and not isinstance(restart, bool):
        raise RunOptionError(f"restart must be True or False, got {describe_value(restart)}")
    if isinstance(checkpoint, Checkpoint):
        raise RunOptionError(
            "checkpoint=Checkpoint(...) and on_checkpoint_mismatch=/restart= are the same "
            "option; give only checkpoint=Checkpoint(path, on_mismatch=..., restart=...)"
        )
    if checkpoint is None:
        if restart:
            raise RunOptionError("restart=True needs a checkpoint (there is nothing to start over)")
        return None
    if not isinstance(checkpoint, str | os.PathLike):
        raise RunOptionError(f"checkpoint must be a file path, got {describe_value(checkpoint)}")
    return Checkpoint(checkpoint, on_mismatch, bool(restart))
