"""The run fingerprint: stable across processes, sensitive to every change."""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from hush.checkpoint import fingerprint


class Color(enum.Enum):
    RED = "red"


class Config(BaseModel):
    model: str
    temperature: float


@dataclass
class Item:
    name: str
    tags: frozenset[str]


class Plain:
    def __init__(self, value: int) -> None:
        self.value = value


def test_is_a_sha256_hex_digest() -> None:
    digest = fingerprint({"a": 1})
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_mapping_order_does_not_matter() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({1: "x", "1": "y"}) == fingerprint({"1": "y", 1: "x"})
    assert fingerprint({"s": {"b", "a"}}) == fingerprint({"s": {"a", "b"}})


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {"a": 1.0}),
        ({"a": 1}, {"a": True}),
        ({"a": 1}, {"a": "1"}),
        ({1: "x"}, {"1": "x"}),
        ([1, 2], [2, 1]),
        (Config(model="m", temperature=0.1), Config(model="m", temperature=0.2)),
        (Item("a", frozenset({"x"})), Item("a", frozenset({"y"}))),
        (Plain(1), Plain(2)),
        (b"ab", "ab"),
        (float("nan"), float("inf")),
    ],
)
def test_changes_are_detected(left: object, right: object) -> None:
    assert fingerprint(left) != fingerprint(right)


def test_parts_are_not_concatenated() -> None:
    assert fingerprint("ab", "c") != fingerprint("a", "bc")
    assert fingerprint({"g": 1}, {}) != fingerprint({"g": 1})


def test_rich_values_are_encoded() -> None:
    value = {
        "config": Config(model="m", temperature=0.2),
        "item": Item("a", frozenset({"x", "y"})),
        "color": Color.RED,
        "type": Config,
        "func": fingerprint,
        "plain": Plain(3),
        "bytes": b"\x00\x01",
        "path": Path("/tmp/x"),
    }
    assert fingerprint(value) == fingerprint(dict(value))


def test_cycles_do_not_recurse_forever() -> None:
    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    assert fingerprint(cyclic) == fingerprint(cyclic)


def test_unstable_values_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hush.checkpoint"):
        fingerprint({"lock": threading.Lock()})
    assert "no stable encoding" in caplog.text


def test_stable_across_processes_and_hash_seeds() -> None:
    code = (
        "from hush.checkpoint import fingerprint\n"
        "print(fingerprint({'graph': {'nodes': ['a', 'b'], 'edges': {('a', 'b')}}},"
        " {'tags': {'x', 'y', 'z', 'w'}, 'n': 1.5}))\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert digests == {
        fingerprint(
            {"graph": {"nodes": ["a", "b"], "edges": {("a", "b")}}},
            {"tags": {"x", "y", "z", "w"}, "n": 1.5},
        )
    }
