"""A stable description of a graph tree: what a run's checkpoint fingerprint covers.

It holds the shape (nodes, edges, inputs, outputs), every node's options (not
``retry`` or ``timeout``: how hard a node is tried, not what it computes), the
identity of every function (qualified name and a digest of its code) and a
digest of every constant. Values the description cannot pin down (a constant
that neither pickles nor encodes stably) raise :class:`FingerprintError`
naming the node and input.
"""

from __future__ import annotations

from typing import Any

from hush.checkpoint.digest import digest
from hush.checkpoint.errors import FingerprintError, UnstableValueError
from hush.checkpoint.hashing import code_identity
from hush.core.nodes.base import BaseNode
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.refs import Each, Ref


def describe(node: BaseNode) -> dict[str, Any]:
    """Kind, name, inputs, outputs, options and (for graphs) children and edges."""
    info: dict[str, Any] = {
        "kind": node.kind,
        "name": node.name,
        "inputs": {k: _value(v, node, f"input '{k}'") for k, v in node.inputs.items()},
        "outputs": sorted(node.output_map),
        "options": _value(node.describe_options(), node, "options"),
    }
    if isinstance(node, GraphNode):
        info["nodes"] = [describe(n) for n in node.nodes.values()]
        info["edges"] = sorted(f"{s!r}>>{'~' if soft else ''}{d!r}" for s, d, soft in node.edges)
    return info


def _value(value: Any, node: BaseNode, what: str) -> Any:
    if isinstance(value, Ref):
        return repr(value)
    if isinstance(value, Each):
        return ["each", _value(value.source, node, what)]
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _value(v, node, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v, node, what) for v in value]
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        return ["type", f"{value.__module__}.{value.__qualname__}", schema() if schema else None]
    if callable(value):
        return ["code", code_identity(value)]
    try:
        return ["value", digest(value)]
    except UnstableValueError as exc:
        raise FingerprintError(
            f"{node.path}: {what} holds a {type(value).__name__} that cannot be fingerprinted "
            f"for the checkpoint ({exc}); make it picklable, or pass it in through the run's "
            "inputs or a closure"
        ) from None
