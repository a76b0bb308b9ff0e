"""``BranchNode``: exactly one of its targets runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hush.core.conditions import Condition, ConditionError
from hush.core.errors import GraphDefinitionError, HushError
from hush.core.nodes.base import BaseNode
from hush.core.policies import RetryPolicy

if TYPE_CHECKING:
    from hush.core.call import NodeCall


class NoBranchMatchedError(HushError, LookupError):
    """No case held and the branch has no ``default``."""


class BranchNode(BaseNode):
    """Picks one successor by the first case whose condition holds.

    ``cases`` maps a condition (an expression over the inputs such as
    ``"score >= 90"``, or a callable taking inputs by name) to a target node
    name. The other targets are skipped, and the skip flows down hard edges
    until a soft join (``[a, b] >> ~merge``). Output ``target`` is the name chosen.
    """

    kind = "branch"

    def __init__(
        self,
        name: str,
        *,
        cases: Mapping[str | Callable[..., Any], str],
        default: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        if not isinstance(cases, Mapping) or not cases:
            raise GraphDefinitionError(f"BranchNode '{name}': cases must be a non-empty dict")
        self.cases: list[tuple[Condition, str]] = []
        for cond, target in cases.items():
            if not isinstance(target, str):
                raise GraphDefinitionError(
                    f"BranchNode '{name}': the target of case {cond!r} must be a node name, got {target!r}"
                )
            try:
                self.cases.append((Condition(cond), target))
            except ConditionError as exc:
                raise GraphDefinitionError(f"BranchNode '{name}': {exc}") from None
        self.default = default
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)

    def check(self) -> list[str]:
        """Conditions may only use the branch's inputs."""
        problems = []
        for cond, _ in self.cases:
            unknown = cond.unknown_names(set(self.inputs))
            if unknown:
                problems.append(f"condition {cond!r} uses {sorted(unknown)}, which are not inputs")
        return problems

    def describe_options(self) -> dict[str, Any]:
        """Cases and default."""
        return {"cases": [(c.spec, t) for c, t in self.cases], "default": self.default}

    def output_keys(self) -> frozenset[str] | None:
        """The chosen target's name and the condition that matched."""
        return frozenset({"target", "matched", "error"})

    def routes(self) -> set[str] | None:
        """Every target the branch may choose."""
        targets = {t for _, t in self.cases}
        if self.default is not None:
            targets.add(self.default)
        return targets

    def select(self, outputs: Mapping[str, Any]) -> str | None:
        """The chosen target."""
        target = outputs.get("target")
        return target if isinstance(target, str) else None

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Evaluate cases in order; the first that holds wins, else ``default``."""
        for cond, target in self.cases:
            if cond(inputs):
                return {"target": target, "matched": repr(cond)}
        if self.default is None:
            raise NoBranchMatchedError(
                f"BranchNode '{self.name}': no case matched {inputs!r} and there is no default"
            )
        return {"target": self.default, "matched": None}
