"""Checks of the options given to ``Hush.run``: a clear error for each wrong type or value."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hush.core.errors import RunOptionError


def check_run_options(
    *,
    inputs: Any,
    max_concurrency: Any,
    run_id: Any,
    checkpoint: Any,
    on_checkpoint_mismatch: Any,
    restart: Any,
    flush_timeout: Any,
    progress: Any,
    on_progress: Any,
    user_id: Any,
    session_id: Any,
    tags: Any,
    metadata: Any,
    max_cost: Any = None,
    max_total_tokens: Any = None,
    cache: Any = None,
    executor: Any = None,
) -> None:
    """Raise :class:`RunOptionError` naming the first option that is wrong."""
    if not isinstance(inputs, Mapping):
        raise RunOptionError(f"inputs must be a dict, got {type(inputs).__name__}")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise RunOptionError(
            f"max_concurrency must be a positive int, got {describe_value(max_concurrency)}"
        )
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise RunOptionError(f"run_id must be a non-empty string, got {describe_value(run_id)}")
    if checkpoint is not None and not isinstance(checkpoint, str | os.PathLike):
        raise RunOptionError(f"checkpoint must be a file path, got {describe_value(checkpoint)}")
    if on_checkpoint_mismatch not in ("error", "restart"):
        raise RunOptionError(
            f"on_checkpoint_mismatch must be 'error' or 'restart', got {describe_value(on_checkpoint_mismatch)}"
        )
    if not isinstance(restart, bool):
        raise RunOptionError(f"restart must be True or False, got {describe_value(restart)}")
    if restart and checkpoint is None:
        raise RunOptionError("restart=True needs a checkpoint (there is nothing to start over)")
    if flush_timeout is not None and (
        isinstance(flush_timeout, bool)
        or not isinstance(flush_timeout, int | float)
        or not (flush_timeout >= 0 and math.isfinite(flush_timeout))
    ):
        raise RunOptionError(
            f"flush_timeout must be a number of seconds >= 0, got {describe_value(flush_timeout)}"
        )
    if progress is not None and not isinstance(progress, bool):
        raise RunOptionError(
            f"progress must be True, False or None, got {describe_value(progress)}"
        )
    if on_progress is not None and not callable(on_progress):
        raise RunOptionError(f"on_progress must be callable, got {describe_value(on_progress)}")
    for name, value in (("user_id", user_id), ("session_id", session_id)):
        if value is not None and not isinstance(value, str):
            raise RunOptionError(f"{name} must be a string, got {describe_value(value)}")
    if tags is not None and (
        isinstance(tags, str)
        or not isinstance(tags, Sequence)
        or not all(isinstance(t, str) for t in tags)
    ):
        raise RunOptionError(f"tags must be a list of strings, got {describe_value(tags)}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise RunOptionError(f"metadata must be a dict, got {describe_value(metadata)}")
    if max_cost is not None and (
        isinstance(max_cost, bool)
        or not isinstance(max_cost, int | float)
        or not (max_cost >= 0 and math.isfinite(max_cost))
    ):
        raise RunOptionError(
            f"max_cost must be a number of USD >= 0, got {describe_value(max_cost)}"
        )
    if max_total_tokens is not None and (
        isinstance(max_total_tokens, bool)
        or not isinstance(max_total_tokens, int)
        or max_total_tokens < 0
    ):
        raise RunOptionError(
            f"max_total_tokens must be an int >= 0, got {describe_value(max_total_tokens)}"
        )
    if executor is not None:
        from hush.core.executor import ItemExecutor

        if not isinstance(executor, ItemExecutor):
            raise RunOptionError(
                f"executor must be an item executor such as RayExecutor(...), got {describe_value(executor)}"
            )
    if cache is not None and not isinstance(cache, bool | str | os.PathLike):
        from hush.providers.cache import ResponseCache

        if not isinstance(cache, ResponseCache):
            raise RunOptionError(
                f"cache must be a file path, True or a ResponseCache, got {describe_value(cache)}"
            )


def describe_value(value: Any) -> str:
    """A value for an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
