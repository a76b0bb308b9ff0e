"""What the driver sends workers: each map body once, and clear errors for what cannot go.

A body travels as one object-store entry (the plan, the driver's LLM resources and
the names of their limiter actors), put once per plan; every call carries its ref,
so any worker, also a fresh one, loads what it lacks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray
from ray import cloudpickle

from hush.core.errors import NodeInputError

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.plan import GraphPlan


class Bodies:
    """The bodies shipped so far, by plan (a plan is kept, so its ``id`` is not reused by
    another while the executor lives)."""

    def __init__(self, limiter_name: Callable[[str, Any], str]) -> None:
        self._limiter_name = limiter_name
        self._shipped: dict[int, tuple[GraphPlan, str, Any]] = {}

    def ship(self, call: NodeCall, plan: GraphPlan) -> tuple[str, Any]:
        """The body's id and object ref, put in the object store on first use."""
        found = self._shipped.get(id(plan))
        if found is None or found[0] is not plan:
            try:
                cloudpickle.dumps(plan)
            except Exception as exc:
                raise unshippable_body(call, plan, exc) from None
            resources = llm_resources()
            names = {key: self._limiter_name(key, res) for key, res in resources.items()}
            found = (plan, uuid.uuid4().hex, ray.put((plan, resources, names)))
            self._shipped[id(plan)] = found
        return found[1], found[2]

    def clear(self) -> None:
        self._shipped.clear()


def llm_resources() -> dict[str, Any]:
    """The driver's LLM resources, for the workers."""
    from hush.providers.errors import ResourceError
    from hush.providers.resources import get_registry

    registry = get_registry()
    found = {}
    for key in registry.keys():  # noqa: SIM118 (a registry, not a dict)
        if key.startswith("llm:"):
            try:
                found[key] = registry.get_llm(key)
            except ResourceError:
                continue
    return found


def picklable(value: Any) -> bool:
    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


def unshippable_body(call: NodeCall, plan: GraphPlan, exc: Exception) -> NodeInputError:
    """Name the node of the body that cannot be pickled, and what of it."""
    culprit = f"its body ({type(exc).__name__}: {exc})"
    for node_plan in plan.nodes:
        node = node_plan.node
        for what, value in (
            ("code function", getattr(node, "code_fn", None)),
            ("inputs", node.inputs),
        ):
            try:
                cloudpickle.dumps(value)
            except Exception as inner:
                culprit = f"node '{node.path}': its {what} ({type(inner).__name__}: {inner})"
                break
        else:
            continue
        break
    return NodeInputError(
        f"{type(call.node).__name__} '{call.node.name}' cannot be sent to Ray workers: "
        f"{culprit} cannot be pickled; define it at module level and keep locks, files and "
        "connections out of it"
    )


def unshippable_input(path: str, state: dict[str, Any], exc: Exception) -> str:
    """Name the item input that cannot be pickled."""
    for key, value in state.items():
        try:
            cloudpickle.dumps(value)
        except Exception as inner:
            return (
                f"{path}: input '{key}' ({type(value).__name__}) cannot be sent to a Ray "
                f"worker: {type(inner).__name__}: {inner}"
            )
    return f"{path}: the item cannot be sent to a Ray worker: {exc}"
