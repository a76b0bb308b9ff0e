"""Scale-out on Ray: ``MapNode(..., executor=RayExecutor())`` runs a map's items on a cluster.

Needs Ray (``pip install 'hush[ray]'``); imported on first use, so this package
imports without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hush.distributed.executor import RayExecutor

__all__ = ["RayExecutor"]


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":
        try:
            return importlib.import_module("hush.distributed.executor").RayExecutor
        except ImportError as exc:
            if exc.name is not None and exc.name.split(".")[0] != "ray":
                raise
            raise ImportError(
                "RayExecutor needs Ray, which is not installed: pip install 'hush[ray]'"
            ) from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
