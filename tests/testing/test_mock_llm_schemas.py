"""Minimal valid instances of JSON schemas, checked by validating them with pydantic."""

import datetime
import uuid
from enum import IntEnum
from typing import Annotated, Any, Literal

import pydantic
import pytest
from pydantic import Field, TypeAdapter

from hush.testing.faults import Markers, parse_markers
from hush.testing.schemas import instance_of


class Level(IntEnum):
    LOW = 3
    HIGH = 9


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]
    lives: Annotated[int, Field(ge=1, le=9)]


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]
    bark: Annotated[str, Field(min_length=12)]


class Tree(pydantic.BaseModel):
    label: str
    children: list["Tree"]
    parent: "Tree | None"


class Everything(pydantic.BaseModel):
    ratio: Annotated[float, Field(gt=0, lt=1)]
    count: Annotated[int, Field(gt=10, multiple_of=5)]
    short: Annotated[str, Field(max_length=3)]
    pair: tuple[int, str]
    tags: Annotated[list[str], Field(min_length=2, max_length=4)]
    scores: dict[str, int]
    when: datetime.datetime
    day: datetime.date
    ident: uuid.UUID
    level: Level
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    either: Cat | Dog
    optional_default: int | None = None
    tree: Tree


@pytest.mark.parametrize(
    "kind",
    [
        str,
        int,
        float,
        bool,
        list[int],
        dict[str, float],
        Everything,
        Tree,
        Cat | None,
        Literal[4, 5],
    ],
)
def test_instance_validates(kind: Any) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    adapter.validate_python(instance_of(adapter.json_schema()))


def test_required_properties_only() -> None:
    value = instance_of(Everything.model_json_schema())
    assert "optional_default" not in value
    assert value["count"] == 15 and 0 < value["ratio"] < 1 and value["short"] == "sho"


def test_loose_schemas() -> None:
    assert instance_of({}) == "value"
    assert instance_of({"type": ["null", "integer"], "minimum": 2}) == 2
    assert instance_of({"properties": {"a": {"const": 1}}, "required": ["a"]}) == {"a": 1}
    assert instance_of(
        {"allOf": [{"properties": {"a": {"type": "boolean"}}, "required": ["a"]}]}
    ) == {"a": True}
    assert instance_of({"type": "number", "minimum": 0, "exclusiveMinimum": True}) > 0


def test_markers() -> None:
    assert parse_markers("no markers") is None
    assert parse_markers("[[not-a-marker]]") is None
    assert parse_markers("x [[fail:503]] y") == Markers(fault=503)
    assert parse_markers("[[fail-times:3:hang]]") == Markers(fault="hang", times=3)
    assert parse_markers("[[fail-once:500]] [[sleep:0.5]] [[tool:search]]") == Markers(
        fault=500, times=1, sleep=0.5, tool="search"
    )
    assert parse_markers("[[fail:200]] [[fail-times:x:500]] [[sleep:soon]]") is None
