"""References to values: ``PARENT["key"]`` and ``node["key"]``, with chained indexing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hush.core.errors import GraphDefinitionError

if TYPE_CHECKING:
    from hush.core.nodes.base import BaseNode


class _Parent:
    """The enclosing graph's state; for the root graph, the run's inputs."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Ref:
        if not isinstance(key, str):
            raise GraphDefinitionError(f"PARENT keys are strings, got {key!r}")
        return Ref(self, (key,))

    def __repr__(self) -> str:
        return "PARENT"


PARENT = _Parent()


class Ref:
    """A value that will exist at run time: ``source[path[0]][path[1]]...``."""

    __slots__ = ("path", "source")

    def __init__(self, source: BaseNode | _Parent, path: tuple[Any, ...]) -> None:
        self.source = source
        self.path = path

    def __getitem__(self, key: Any) -> Ref:
        return Ref(self.source, (*self.path, key))

    def __rshift__(self, target: Any) -> Any:
        """``node["key"] >> PARENT["key"]``: write an output to the enclosing graph."""
        from hush.core.nodes.base import BaseNode

        if not isinstance(self.source, BaseNode) or len(self.path) != 1:
            raise GraphDefinitionError(
                f"only node['key'] >> PARENT['key'] is allowed, not {self!r} >> {target!r}"
            )
        self.source.add_output(self.path[0], target)
        return target

    @property
    def key(self) -> Any:
        """The first key, the one the source produces."""
        return self.path[0]

    def __repr__(self) -> str:
        src = "PARENT" if isinstance(self.source, _Parent) else self.source.name
        return src + "".join(f"[{k!r}]" for k in self.path)


def is_parent_ref(value: Any) -> bool:
    """True for ``PARENT[...]``."""
    return isinstance(value, Ref) and value.source is PARENT


class Each:
    """Marks an iteration node input that is iterated over (one value per item).

    ``Each(PARENT["items"])``, ``Each(node["rows"])`` or ``Each([1, 2, 3])``; any
    iterable works, and it is pulled lazily. Several ``Each`` inputs zip.
    """

    __slots__ = ("source",)

    def __init__(self, source: Any) -> None:
        if isinstance(source, Each):
            raise GraphDefinitionError("Each(Each(...)) is not allowed")
        self.source = source

    def __repr__(self) -> str:
        return f"Each({self.source!r})"
