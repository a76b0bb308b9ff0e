"""The input digest keys saved results: different inputs never share one, equal inputs always do."""

from __future__ import annotations

import enum
import math
import struct
import subprocess
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hush.checkpoint import UndigestableError, digest
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


@dataclass
class Point:
    x: Any
    y: Any


class Plain:
    def __init__(self, state: Any) -> None:
        self.state = state

    def __eq__(self, other: object) -> bool:
        return type(other) is Plain and same(self.state, other.state)

    __hash__ = None  # type: ignore[assignment]


class Colour(enum.Enum):
    RED = 1
    ONE = "1"


def same(a: Any, b: Any) -> bool:
    """Type-aware equality: the same types all the way down, floats by their value bits
    (every NaN alike, -0.0 not 0.0), dicts and sets regardless of order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(
            any(same(k, k2) and same(a[k], b[k2]) for k2 in b) for k in a
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, BaseException):
        return same(a.args, b.args) and same(vars(a), vars(b))
    if isinstance(a, Point):
        return same(a.x, b.x) and same(a.y, b.y)
    if isinstance(a, Plain):
        return same(a.state, b.state)
    return bool(a == b)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.sampled_from(list(Colour)),
)
hashable = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=3), st.binary(max_size=3)
)


def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashable, children, max_size=4),
        st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4),
        st.builds(Point, children, children),
        st.builds(Plain, children),
        st.builds(ValueError, st.text(max_size=4)),
        st.builds(KeyError, children),
    )


values = st.recursive(leaves, nested, max_leaves=12)


@settings(max_examples=600, deadline=None)
@given(values, values)
def test_distinct_values_have_distinct_digests_and_equal_values_equal_ones(a: Any, b: Any) -> None:
    assert (digest(a) == digest(b)) == same(a, b)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(hashable, values, max_size=5), st.randoms())
def test_a_dict_or_set_digests_alike_in_any_insertion_order(d: dict[Any, Any], rnd: Any) -> None:
    pairs = list(d.items())
    rnd.shuffle(pairs)
    assert digest(dict(pairs)) == digest(d)
    keys = list(d)
    rnd.shuffle(keys)
    assert digest(set(keys)) == digest(set(d))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((1, 2), [1, 2]),
        (b"ab", ["\x00bytes", "6162"]),
        (b"ab", "ab"),
        (b"ab", bytearray(b"ab")),
        (True, 1),
        (1, 1.0),
        (0.0, -0.0),
        (float("inf"), float("-inf")),
        ({1: "a"}, {"1": "a"}),
        ({1, 2}, frozenset({1, 2})),
        (ValueError("disk full"), ValueError("timeout")),
        (ValueError("x"), KeyError("x")),
        (Colour.ONE, "1"),
        (OrderedDict(a=1, b=2), OrderedDict(b=2, a=1)),
        (Point(1, 2), Point(1, 3)),
        ({"id": 145, "p": (1, 2)}, {"id": 145, "p": [1, 2]}),
        ("số", "so"),
        (lambda x: x + 1, lambda x: x + 2),
    ],
)
def test_values_the_old_digest_merged_are_told_apart(a: Any, b: Any) -> None:
    assert digest(a) != digest(b)


def test_nan_is_one_value_and_big_ints_are_digested() -> None:
    assert digest(float("nan")) == digest(-float("nan")) == digest(float("inf") - float("inf"))
    assert digest(10**5000) != digest(10**5000 + 1)


def test_what_has_no_stable_form_is_refused_with_the_reason() -> None:
    import threading

    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(UndigestableError, match="holding itself"):
        digest(looped)
    with pytest.raises(UndigestableError, match="does not pickle"):
        digest({"lock": threading.Lock()})

    class Local:
        pass

    with pytest.raises(UndigestableError, match="defined inside a function"):
        digest(Local())


def test_digests_are_the_same_in_another_process_and_hash_seed() -> None:
    value = {"b": {"x", "y", "z"}, "a": (1, 2.5, b"q", None), "e": ValueError("disk full")}
    code = (
        "from hush.checkpoint import digest\n"
        "print(digest({'a': (1, 2.5, b'q', None), 'e': ValueError('disk full'), "
        "'b': {'z', 'y', 'x'}}))"
    )
    seeds = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
            cwd=Path(__file__).resolve().parents[2],
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert seeds == {digest(value)}


async def test_a_resumed_run_does_not_reuse_the_answer_of_other_inputs(tmp_path: Path) -> None:
    """Issue 25.1: these two rows once shared a digest (145 put byte 0x91 in the pickle)."""
    calls: Counter[str] = Counter()

    async def answer(row: dict[str, Any]) -> dict[str, str]:
        calls[repr(row)] += 1
        return {"answer": f"{type(row['p']).__name__} {row['err'].args[0]}"}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"row": Each(PARENT["rows"])}) as m:
            node = CodeNode(name="answer", code_fn=answer, inputs={"row": PARENT["row"]})
            node["answer"] >> PARENT["answer"]
            START >> node >> END
        m["answer"] >> PARENT["answers"]
        START >> m >> END
    engine = Hush(g)
    db = tmp_path / "run.db"
    first = {"id": 145, "p": (1, 2), "err": ValueError("disk full")}
    second = {"id": 145, "p": [1, 2], "err": ValueError("timeout")}

    done = await engine.run({"rows": [first]}, checkpoint=db, run_id="r")
    assert done["answers"] == ["tuple disk full"]
    resumed = await engine.run({"rows": [second]}, checkpoint=db, run_id="r")
    assert resumed["answers"] == ["list timeout"]
    assert sum(calls.values()) == 2
    again = await engine.run({"rows": [first]}, checkpoint=db, run_id="r")
    assert again["answers"] == ["tuple disk full"]
    assert sum(calls.values()) == 2
