"""Exceptions and the error record a failed node leaves behind."""

from __future__ import annotations

import traceback as _tb
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class HushError(Exception):
    """Base class of every error hush raises itself."""


class GraphDefinitionError(HushError, ValueError):
    """A graph was written wrong in a way that is caught as the line runs."""


class GraphBuildError(HushError, ValueError):
    """``build()`` found problems; ``problems`` lists every one with its node path."""

    def __init__(self, graph: str, problems: Sequence[str]) -> None:
        self.graph = graph
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"graph '{graph}' has {len(self.problems)} problem(s):\n{lines}")


class MissingInputError(HushError, KeyError):
    """The run's inputs lack keys that the root graph's nodes read."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "missing input"


class NodeInputError(HushError, LookupError):
    """An input of a node could not be resolved at run time."""


class NodeReturnError(HushError, TypeError):
    """A node returned something other than a dict (or ``None``)."""


class NodeTimeoutError(HushError, TimeoutError):
    """One attempt of a node ran past its ``timeout``."""


@dataclass(frozen=True, slots=True)
class NodeError:
    """What a failed node or map item leaves in its ``error`` output."""

    type: str
    message: str
    node: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, node: str) -> NodeError:
        """Record ``exc`` raised by the node at path ``node``."""
        text = "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type=type(exc).__name__, message=str(exc), node=node, traceback=text)

    def __str__(self) -> str:
        return f"{self.node}: {self.type}: {self.message}"


class NodeFailedError(HushError, RuntimeError):
    """Raised by a container when work inside it failed; carries that error."""

    def __init__(self, error: NodeError) -> None:
        self.error = error
        super().__init__(str(error))


class RunError(HushError, RuntimeError):
    """Raised by ``run(..., raise_on_error=True)``; carries every error of the run."""

    def __init__(self, errors: Iterable[NodeError], result: object = None) -> None:
        self.errors = list(errors)
        self.result = result
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"run finished with {len(self.errors)} error(s):\n{lines}")
