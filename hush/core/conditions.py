"""Branch and loop conditions: callables or safe expressions over the inputs.

Expressions are parsed with :mod:`ast` and checked against a whitelist
(comparisons, ``and``/``or``/``not``, arithmetic, literals, membership, names
of inputs). Calls, attributes, subscripts, lambdas and everything else are
rejected when the node is created, so no user string ever runs as code.

Size is bounded too: the text (:data:`MAX_LENGTH`), its nesting
(:data:`MAX_DEPTH`), and what ``*`` and ``%`` can build. A literal string or
list may not be repeated or used as a format, and at run time a repetition of
an input is refused beyond :data:`MAX_REPEAT` items, so an evaluation never
allocates more than its inputs and a small multiple of them.
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
            self._code = _compile(_Bounded().visit(tree), spec)
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
            return bool(eval(self._code, dict(_HELPERS), dict(values)))
        assert self._fn is not None
        if self._params is None:
            return bool(self._fn(**values))
        return bool(self._fn(**{k: v for k, v in values.items() if k in self._params}))

    def __repr__(self) -> str:
        return self.text


MAX_LENGTH = 2000
"""Longest condition expression accepted, in characters."""
MAX_DEPTH = 64
"""Deepest nesting of a condition expression (``a + b + c`` nests two levels)."""
MAX_REPEAT = 100_000
"""Longest string or sequence a condition may build with ``*`` from an input."""

_SEQUENCES = (str, bytes, list, tuple)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _parse(text: str) -> ast.Expression:
    short = _short(text)
    if len(text) > MAX_LENGTH:
        raise ConditionError(
            f"condition {short!r} is {len(text)} characters long (at most {MAX_LENGTH}); "
            "use a callable for complex conditions"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"condition {short!r} is not a valid expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ConditionError(
            f"condition {short!r} is nested too deeply to parse; use a callable"
        ) from None
    for node, depth in _walk(tree):
        if depth > MAX_DEPTH:
            raise ConditionError(
                f"condition {short!r} is nested more than {MAX_DEPTH} levels deep; "
                "use a callable for complex conditions"
            )
        if not isinstance(node, _ALLOWED):
            raise ConditionError(
                f"condition {short!r} uses {type(node).__name__}, which is not allowed "
                "(only comparisons, and/or/not, arithmetic, literals, membership and input names)"
            )
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ConditionError(f"condition {short!r} uses the name {node.id!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Mod):
            literal = next((side for side in (node.left, node.right) if _is_sequence(side)), None)
            if literal is not None and (isinstance(node.op, ast.Mult) or literal is node.left):
                what = "repeats" if isinstance(node.op, ast.Mult) else "formats"
                raise ConditionError(
                    f"condition {short!r} {what} the literal {_short(ast.unparse(literal))}, "
                    "which is not allowed (use a callable to build strings or lists)"
                )
    return tree


def _walk(tree: ast.AST) -> list[tuple[ast.AST, int]]:
    """Every node with its depth, without recursion (so no depth can overflow the stack)."""
    out: list[tuple[ast.AST, int]] = []
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        out.append((node, depth))
        if depth <= MAX_DEPTH:
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return out


def _is_sequence(node: ast.AST) -> bool:
    """A string, bytes, list, tuple or set written in the expression."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    return isinstance(node, ast.List | ast.Tuple | ast.Set)


def _compile(tree: ast.Expression, text: str) -> Any:
    try:
        return compile(ast.fix_missing_locations(tree), "<condition>", "eval")
    except (RecursionError, MemoryError):
        raise ConditionError(
            f"condition {_short(text)!r} is nested too deeply to compile; use a callable"
        ) from None


class _Bounded(ast.NodeTransformer):
    """Route ``*`` and ``%`` through :data:`_HELPERS`, which bound what inputs can build."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        helper = {ast.Mult: "__hush_mul__", ast.Mod: "__hush_mod__"}.get(type(node.op))
        if helper is None:
            return node
        call = ast.Call(ast.Name(helper, ast.Load()), [node.left, node.right], [])
        return ast.copy_location(call, node)


def _mul(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCES) and isinstance(times, int):
            size = len(seq) * times
            if size > MAX_REPEAT:
                raise ConditionError(
                    f"condition repeats a {type(seq).__name__} of {len(seq)} to {size} items "
                    f"(at most {MAX_REPEAT})"
                )
    return left * right


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, str | bytes):
        raise ConditionError("condition formats a string with '%', which is not allowed")
    return left % right


_HELPERS: dict[str, Any] = {"__builtins__": {}, "__hush_mul__": _mul, "__hush_mod__": _mod}
"""What a condition's code sees besides its inputs (users cannot name ``__`` names)."""


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
