"""Resolving a node's input bindings against one graph execution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from hush.core.errors import NodeInputError
from hush.core.plan import (
    CONST,
    FROM_NODE,
    FROM_PARENT,
    READ_CONST,
    READ_NODE,
    READ_PARENT,
    Binding,
    NodePlan,
)

if TYPE_CHECKING:
    from hush.core.runtime import Frame

OK: Final = "ok"
ERROR: Final = "error"
_MISSING = object()


def resolve_inputs(frame: Frame, np: NodePlan) -> dict[str, Any]:
    """The values of every input of ``np``; raises :class:`NodeInputError` naming the input.

    Reads compiled to a sibling's output or a state key are taken here directly; anything
    else, and every read that fails, goes through :func:`resolve`."""
    inputs: dict[str, Any] = {}
    for name, how, source, key, b in np.reads:
        if how == READ_NODE:
            out = frame.outputs[source]
            if frame.status[source] == OK and out:
                value = out.get(key, _MISSING)
                inputs[name] = value if value is not _MISSING else resolve(frame, b)
            else:
                inputs[name] = resolve(frame, b)
        elif how == READ_PARENT:
            value = frame.state.get(key, _MISSING)
            inputs[name] = value if value is not _MISSING else resolve(frame, b)
        elif how == READ_CONST:
            inputs[name] = source
        else:
            inputs[name] = resolve(frame, b)
    return inputs


def resolve(frame: Frame, b: Binding) -> Any:
    """The value of one input binding in this frame."""
    kind = b.kind
    if kind == CONST:
        return b.value
    if kind == FROM_PARENT:
        value = frame.state.get(b.key, _MISSING)
        if value is _MISSING:
            have = ", ".join(sorted(map(str, frame.state))) or "nothing"
            raise NodeInputError(
                f"input '{b.name}' reads {b.source} but the state of '{frame.plan.path}' has no "
                f"'{b.key}' (it has: {have})"
            )
    elif kind == FROM_NODE:
        value = _node_output(frame, b)
    else:
        return _resolve_nested(frame, b.value)
    if b.subpath:
        return _lookup(value, b)
    return value


def _node_output(frame: Frame, b: Binding) -> Any:
    j = b.value
    status = frame.status[j]
    if status == OK:
        out = frame.outputs[j] or {}
        value = out.get(b.key, _MISSING)
        if value is not _MISSING:
            return value
        if b.key == "error":
            return None
        src = frame.plan.nodes[j].name
        have = ", ".join(sorted(map(str, out))) or "nothing"
        raise NodeInputError(
            f"input '{b.name}' reads {b.source} but '{src}' returned no '{b.key}' "
            f"(it returned: {have})"
        )
    if status == ERROR and b.key == "error":
        return frame.node_errors[j]
    return None


def _lookup(value: Any, b: Binding) -> Any:
    for key in b.subpath:
        if value is None:
            return None
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise NodeInputError(
                f"input '{b.name}' reads {b.source}: no [{key!r}] in a {type(value).__name__}"
            ) from exc
    return value


def _resolve_nested(frame: Frame, value: Any) -> Any:
    if isinstance(value, Binding):
        return resolve(frame, value)
    if isinstance(value, dict):
        return {k: _resolve_nested(frame, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_nested(frame, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve_nested(frame, v) for v in value)
    return value
