"""Exceptions and the error record a failed node leaves behind.

Every error hush raises itself derives from :class:`HushError`::

    HushError
    ├── GraphDefinitionError     a graph written wrong, caught as the line runs
    ├── GraphBuildError          build() found problems (``.problems`` lists them all)
    ├── MissingInputError        run inputs lack keys the root graph reads
    ├── RunOptionError           a bad option given to run()
    ├── NodeInputError           an input or declared output could not be resolved
    ├── NodeReturnError          a node returned something other than a dict or None
    ├── NodeTimeoutError         one attempt ran past the node's ``timeout``
    ├── NodeCancelledError       a node raised CancelledError while the run was not cancelled
    ├── NodeFailedError          a container failed because work inside it failed
    └── RunError                 run(raise_on_error=True) finished with errors

Others live next to what raises them: ``PromptError`` (``hush.providers``),
``NoBranchMatchedError``, ``MaxIterationsError`` and the checkpoint errors
(``hush.checkpoint``). A node's failure is recorded as a :class:`NodeError`.

Each exception class says whether retrying can help (``retryable``): hush's
own errors describe a mistake that a retry repeats, except a timeout.
"""

from __future__ import annotations

import builtins
import traceback as _tb
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from hush.core.redaction import redact
from hush.hush_error import HushError as HushError


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


class RunOptionError(HushError, TypeError, ValueError):
    """An option given to ``run()`` has the wrong type or value."""


class NodeInputError(HushError, LookupError):
    """An input of a node could not be resolved, or a declared output is missing."""


class NodeValueError(HushError, TypeError, ValueError):
    """A node's input has the wrong type or value: the same input fails the same way, so it is not retried."""


class NodeReturnError(HushError, TypeError):
    """A node returned something other than a dict (or ``None``)."""


class NodeTimeoutError(HushError, TimeoutError):
    """One attempt of a node ran past its ``timeout``."""

    retryable: ClassVar[bool] = True


class NodeCancelledError(HushError):
    """A node raised ``CancelledError`` although nobody cancelled the run or the node.

    Typically the node awaited a future or task that something else cancelled.
    """

    retryable: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class NodeError:
    """What a failed node or map item leaves in its ``error`` output.

    ``node`` is the path of the node that raised (``graph/map[3]/llm`` inside a
    map item); ``retryable`` says whether running it again may succeed.
    """

    type: str
    message: str
    node: str
    traceback: str = ""
    retryable: bool = True
    kinds: tuple[str, ...] = ()
    """Qualified names of the exception's classes (its MRO), so that a retry policy of a
    container can tell which exception failed inside it."""

    @classmethod
    def from_exception(cls, exc: BaseException, node: str) -> NodeError:
        """Record ``exc`` raised by the node at path ``node`` (configured secrets redacted)."""
        text = "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))
        return cls(
            type=type(exc).__name__,
            message=redact(str(exc)),
            node=node,
            traceback=redact(text),
            retryable=is_retryable(exc),
            kinds=tuple(qualified_name(k) for k in type(exc).__mro__),
        )

    def is_a(self, kind: builtins.type[BaseException]) -> bool:
        """Whether the recorded exception was an instance of ``kind``."""
        return qualified_name(kind) in self.kinds

    def __str__(self) -> str:
        return f"{self.node}: {self.type}: {self.message}"

    def __repr__(self) -> str:
        message = self.message if len(self.message) <= 200 else self.message[:197] + "..."
        return f"NodeError(node={self.node!r}, type={self.type!r}, message={message!r})"


class NodeFailedError(HushError, RuntimeError):
    """Raised by a container when work inside it failed; carries that error."""

    def __init__(self, error: NodeError) -> None:
        self.error = error
        super().__init__(str(error))

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """As retryable as the error inside."""
        return self.error.retryable


class RunError(HushError, RuntimeError):
    """Raised by ``run(..., raise_on_error=True)``; carries every error of the run."""

    def __init__(self, errors: Iterable[NodeError], result: object = None) -> None:
        self.errors = list(errors)
        self.result = result
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"run finished with {len(self.errors)} error(s):\n{lines}")


def qualified_name(kind: type) -> str:
    """``module.QualName`` of a class."""
    return f"{kind.__module__}.{kind.__qualname__}"


def is_retryable(exc: BaseException) -> bool:
    """The default retry rule: may running the same work again succeed?

    An exception with a boolean ``retryable`` attribute (hush's own errors,
    ``LLMCallError``) says so itself; anything else (a connection error, a
    flaky library) is assumed transient. A failure the layer below already
    retried as often as it was allowed (``retries_exhausted``, an LLM call whose
    transport retries ran out) is not retried again.
    """
    if getattr(exc, "retries_exhausted", False) is True:
        return False
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    return True
