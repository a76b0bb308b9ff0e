"""Branch and loop conditions: callables or safe expressions over the inputs.

Expressions are parsed with :mod:`ast` and checked against a whitelist
(comparisons, ``and``/``or``/``not``, arithmetic, literals, membership, names
of inputs). Calls, attributes, subscripts, lambdas and everything else are
rejected when the node is created, so no user string ever runs as code.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Mapping
from typing import Any

_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Set,
)


class ConditionError(ValueError):
    """A condition expression uses something outside the whitelist."""


class Condition:
    """A compiled condition; call it with the inputs to get a bool."""

    __slots__ = ("_code", "_fn", "_params", "names", "spec", "text")

    def __init__(self, spec: str | Callable[..., Any]) -> None:
        self._code: Any = None
        self._fn: Callable[..., Any] | None = None
        self._params: set[str] | None = None
        self.spec = spec
        """The expression text or the callable, as given."""
        if isinstance(spec, str):
            self.text = spec
            tree = _parse(spec)
            self.names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            self._code = compile(tree, "<condition>", "eval")
        elif callable(spec):
            self.text = getattr(spec, "__name__", repr(spec))
            self._fn = spec
            self.names, self._params = _signature_names(spec)
        else:
            raise ConditionError(f"a condition is a string or a callable, got {spec!r}")

    def unknown_names(self, available: set[str]) -> set[str]:
        """Names the condition needs that ``available`` lacks."""
        return self.names - available

    def __call__(self, values: Mapping[str, Any]) -> bool:
        if self._code is not None:
            return bool(eval(self._code, {"__builtins__": {}}, dict(values)))
        assert self._fn is not None
        if self._params is None:
            return bool(self._fn(**values))
        return bool(self._fn(**{k: v for k, v in values.items() if k in self._params}))

    def __repr__(self) -> str:
        return self.text


MAX_LENGTH = 2000
"""Longest condition expression accepted, in characters."""


def _parse(text: str) -> ast.Expression:
    short = text if len(text) <= 60 else text[:57] + "..."
    if len(text) > MAX_LENGTH:
        raise ConditionError(
            f"condition {short!r} is {len(text)} characters long (at most {MAX_LENGTH}); "
            "use a callable for complex conditions"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
        nodes = list(ast.walk(tree))
    except SyntaxError as exc:
        raise ConditionError(f"condition {short!r} is not a valid expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ConditionError(
            f"condition {short!r} is nested too deeply to parse; use a callable"
        ) from None
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            raise ConditionError(
                f"condition {text!r} uses {type(node).__name__}, which is not allowed "
                "(only comparisons, and/or/not, arithmetic, literals, membership and input names)"
            )
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ConditionError(f"condition {text!r} uses the name {node.id!r}")
    return tree


def _signature_names(fn: Callable[..., Any]) -> tuple[set[str], set[str] | None]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set(), None
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return set(), None
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return required, names
