"""Where a map's items run: in this process (the default) or elsewhere (a Ray cluster)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.plan import GraphPlan
    from hush.core.runtime import GraphOutcome


@runtime_checkable
class ItemExecutor(Protocol):
    """Runs one item's body somewhere and returns its outcome as a local run would.

    The driver keeps everything around the body: checkpoint lookups and commits,
    the item's events, the map's concurrency cap and its outputs.
    """

    async def run_body(
        self, call: NodeCall, plan: GraphPlan, path: str, state: dict[str, Any]
    ) -> GraphOutcome:
        """Run ``plan`` with ``state`` as its ``PARENT`` for the item at ``path``."""
