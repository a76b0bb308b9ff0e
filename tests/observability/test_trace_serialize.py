"""Bounded, never-failing conversion of span values to JSON-safe data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from hush.observability import serialize
from hush.observability.serialize import error_message, to_json_text, to_jsonable, usage_details


class Answer(BaseModel):
    text: str
    key: SecretStr


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


def test_common_values_convert() -> None:
    value = {
        "model": Answer(text="hi", key=SecretStr("sk-real")),
        "point": Point(1, dt.date(2024, 5, 1)),
        "tuple": (1, 2.5, None, True),
        "set": frozenset({"a"}),
        3: "int key",
        "inf": float("inf"),
        "blob": bytearray(b"abc"),
        "error": KeyError("k"),
    }
    converted = to_jsonable(value)
    assert converted == {
        "model": {"text": "hi", "key": "**********"},
        "point": {"x": 1, "when": "2024-05-01"},
        "tuple": [1, 2.5, None, True],
        "set": ["a"],
        "3": "int key",
        "inf": "inf",
        "blob": "<3 bytes>",
        "error": "KeyError: 'k'",
    }
    json.dumps(converted, allow_nan=False)


def test_cycles_depth_and_size_are_bounded() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert to_jsonable(loop) == [1, "[1, [...]]"]

    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    json.dumps(to_jsonable(deep))

    many = to_jsonable(list(range(5_000)), max_chars=100_000)
    assert len(many) == 1_001 and many[-1] == "… 4000 more items"

    big = to_jsonable({"text": "x" * 10_000}, max_chars=500)
    assert isinstance(big, str) and big.startswith('{"text": "xxx')
    assert big.endswith(" chars]") and "[truncated" in big
    assert len(big) < 600


def test_objects_that_cannot_be_printed() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert to_jsonable(Broken()) == "<unrepresentable Broken>"
    assert to_jsonable({"b": Broken()}) == {"b": "<unrepresentable Broken>"}


def test_error_message() -> None:
    assert error_message(ValueError("bad input")) == "ValueError: bad input"
    assert error_message(TimeoutError()) == "TimeoutError"

    class _Wrapper(Exception):
        pass

    assert error_message(_Wrapper("NodeError: boom")) == "NodeError: boom"
    assert len(error_message(ValueError("x" * 10_000))) < 2_100


def test_usage_details() -> None:
    assert usage_details({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}) == {
        "input": 3,
        "output": 4,
        "total": 7,
    }
    assert usage_details({"input_tokens": 3, "output_tokens": 4, "cached_tokens": 1}) == {
        "input": 3,
        "output": 4,
        "cached_tokens": 1,
        "total": 7,
    }
    assert usage_details({"prompt_tokens": "3"}) is None
    assert usage_details(None) is None


def test_json_text() -> None:
    assert to_json_text("plain") == "plain"
    assert json.loads(to_json_text({"a": [1, "b"]})) == {"a": [1, "b"]}
    assert to_json_text("x" * 50, max_chars=10) == "x" * 10 + "… [truncated 50 chars]"
    assert to_json_text(list(range(100)), max_chars=20).endswith("[truncated 390 chars]")


def _uncut_by_definition(value: Any, depth: int) -> bool:
    """The rule ``serialize._uncut`` implements, written plainly: every mapping has string
    keys, no container is longer than ``MAX_ITEMS`` or deeper than ``MAX_DEPTH``."""
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return False
        items: Any = list(value.values())
    elif isinstance(value, list | tuple):
        items = value
    else:
        return True
    if depth >= serialize.MAX_DEPTH or len(items) > serialize.MAX_ITEMS:
        return False
    return all(_uncut_by_definition(item, depth + 1) for item in items)


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3)
)
_plain_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.text(max_size=2), st.integers(0, 3), st.booleans()), inner, max_size=5
        ),
    ),
    max_leaves=30,
)


@settings(max_examples=800, deadline=None)
@given(_plain_values, st.integers(0, 5))
def test_the_check_that_a_value_needs_no_cutting_follows_its_rule(value: Any, depth: int) -> None:
    with (
        patch.object(serialize, "MAX_ITEMS", 3),
        patch.object(serialize, "MAX_DEPTH", 4),
    ):
        assert serialize._uncut(value, depth) == _uncut_by_definition(value, depth)


class Level(enum.IntEnum):
    LOW = 1


_flat_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and the infinities too: written as text, not JSON numbers
    st.text(max_size=40),
    st.just(Level.LOW),
    st.lists(st.integers(), max_size=2),
)


_flat_dicts = st.dictionaries(
    st.one_of(st.text(max_size=5), st.integers(0, 3)), _flat_values, max_size=10
)


@pytest.mark.parametrize("convert", [to_json_text, serialize.encoded], ids=["text", "encoded"])
@settings(max_examples=500, deadline=None)
@given(_flat_dicts, st.integers(1, 80))
def test_a_small_flat_dict_comes_out_as_the_general_path_makes_it(
    convert: Any, value: dict[Any, Any], max_chars: int
) -> None:
    """The shortcut for an item's small inputs and outputs changes no text nor data: long
    strings, NaN, enum members, non-string keys and nested lists go the general way."""
    with patch.object(serialize, "flat_json", lambda value, max_chars: None):
        general = convert(value, max_chars=max_chars)
    assert convert(value, max_chars=max_chars) == general
