"""``WhileLoopNode``: repeat the body while a condition holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hush.core.conditions import Condition, ConditionError
from hush.core.errors import GraphDefinitionError, HushError, NodeFailedError
from hush.core.extensions import work_usage
from hush.core.nodes.iteration.base import IterationNode
from hush.core.policies import RetryPolicy

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.extensions import Usage
    from hush.core.state import IterationCounters


class MaxIterationsError(HushError, RuntimeError):
    """A ``WhileLoopNode`` condition still held after ``max_iterations``."""


class WhileLoopNode(IterationNode):
    """Runs its body while ``condition`` holds over the loop state.

    The state starts as the node's inputs; what the body writes to ``PARENT``
    updates it, so outputs of one iteration are the inputs of the next. The
    node's outputs are the final state plus ``iterations``. A condition still
    true after ``max_iterations`` is this node's error.
    """

    kind = "while"
    allows_each: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        condition: str | Callable[..., Any],
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        max_iterations: int = 100,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        try:
            self.condition = Condition(condition)
        except ConditionError as exc:
            raise GraphDefinitionError(f"WhileLoopNode '{name}': {exc}") from None
        if (
            isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or max_iterations < 1
        ):
            raise GraphDefinitionError(
                f"WhileLoopNode '{name}': max_iterations must be a positive int, got {max_iterations!r}"
            )
        self.max_iterations = max_iterations
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)

    def check(self) -> list[str]:
        """The condition may only use names the loop state has."""
        unknown = self.condition.unknown_names(self.body_keys())
        if unknown:
            return [f"condition {self.condition!r} uses {sorted(unknown)}, which are not inputs"]
        return []

    def describe_options(self) -> dict[str, Any]:
        """Condition and bound."""
        return {"condition": self.condition.spec, "max_iterations": self.max_iterations}

    def output_keys(self) -> frozenset[str] | None:
        """The loop state (inputs and what the body writes) and ``iterations``."""
        writes = self.body_writes()
        if writes is None:
            return None
        return writes | set(self.inputs) | {"iterations", "error"}

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Iterate until the condition is false; return the final state."""
        assert self.plan is not None
        state = dict(inputs)
        counters = call.counters(None)
        with work_usage(call.run) as usage:
            n = await self._iterate(call, state, counters, usage)
        return {**state, "iterations": n}

    async def _iterate(
        self,
        call: NodeCall,
        state: dict[str, Any],
        counters: IterationCounters,
        usage: Usage | None,
    ) -> int:
        """Run iterations while the condition holds; return how many ran."""
        assert self.plan is not None
        emit = call.run.emit
        report = call.progress if emit is not None and emit.reads("progress") else None
        n = 0
        while self.condition(state):
            if n >= self.max_iterations:
                raise MaxIterationsError(
                    f"WhileLoopNode '{self.name}': condition {self.condition!r} still true after "
                    f"max_iterations={self.max_iterations}"
                )
            counters.running = 1
            try:
                outcome = await call.run_item(self.plan, n, {}, dict(state), usage=usage)
            finally:
                counters.running = 0
            if outcome.resumed:
                counters.resumed += 1
            if outcome.error is not None:
                counters.failed += 1
                raise NodeFailedError(outcome.error)
            state.update(outcome.written)
            n += 1
            counters.done = n
            if report is not None:
                report(counters)
        return n
