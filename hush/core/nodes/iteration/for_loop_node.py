"""``ForLoopNode``: a map that runs one item at a time, in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hush.core.nodes.iteration.map_node import MapNode
from hush.core.policies import RetryPolicy


class ForLoopNode(MapNode):
    """Like :class:`MapNode` with ``max_concurrency=1``: items run in input order."""

    kind = "for"

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            name, inputs=inputs, outputs=outputs, max_concurrency=1, retry=retry, timeout=timeout
        )
