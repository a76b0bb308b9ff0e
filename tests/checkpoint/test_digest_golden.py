"""Saved content keys never change: digests recorded from the encoder before its fast path.

A checkpoint file keys every result by these digests, so a change to any of them would
make every saved result of an older file miss on resume. The table covers the common
item input (a flat dict of str keys to str/int/float/bool/None), which has a fast path,
and the values next to it that must not take that path.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from hush.checkpoint.digest import digest, digest_after


class Label(str):
    """A str subclass: not the fast path's str."""


GOLDEN: list[tuple[str, Any, str, str]] = [
    ("empty", {}, "d9fde243d283d6f3516210a93994abb4", "5d4603ccf740b9357521c97268c2ec14"),
    ("int", {"item": 5}, "d44e839331e06c2ad5d159692886c5c7", "d598ade51db672555efa15bce7a87a79"),
    (
        "neg_big_int",
        {"item": -(2**70)},
        "85924c17f372525d9b930024fbbce8ce",
        "f45d790e2be77f73677248eef6eeacad",
    ),
    (
        "str",
        {"text": "hello"},
        "17aa251d9e0b9546b3534ec5ea1c0623",
        "4aef6fff7cacb66f052f3c9362425d5b",
    ),
    (
        "unicode",
        {"text": "héllo ✓"},
        "82de681a3863265fec6af052019468a1",
        "45bab06a8e9a63db038eba6a9b57e221",
    ),
    (
        "surrogate",
        {"text": "a\ud800b"},
        "9360b53d7249029b2fbcfcff0f4a119b",
        "90e6070abcb037f9da54d86d58f493f3",
    ),
    (
        "long_str",
        {"text": "x" * 300},
        "ded663d6bd9f9611f38336123b683d68",
        "39b337d1bae9e29b1726535b59ef01b4",
    ),
    ("float", {"x": 1.5}, "02d354387a862359d9f6c6af4d7b929d", "e08ada4c5f41cbc5051e19498dbc5b24"),
    (
        "neg_zero",
        {"x": -0.0},
        "1cac8ce3a6c00ef7d0b8bc985b8e84b6",
        "53a553c20ce1c3800cffcd9b33444d89",
    ),
    (
        "nan",
        {"x": math.nan},
        "72e296cd582dbf6fd9e069c46ca76730",
        "7fe3c3dc50e4369aea2fa6771014f52f",
    ),
    (
        "inf",
        {"x": math.inf},
        "69b66a21818d62733e8a485602d839fd",
        "449262fe92ba58aee7e39dc239bae852",
    ),
    (
        "bools_none",
        {"a": True, "b": False, "c": None},
        "c033e4fac9b77cc8b8bb11a8b391479b",
        "a4e054dd5d3a8563ad2102d88438090e",
    ),
    (
        "int_vs_bool",
        {"a": 1, "b": 0},
        "9baaeb18b3f135251f52ff5d818fb181",
        "e94059415d3d4582914c683cf152add9",
    ),
    (
        "mixed_order",
        {"z": 1, "a": "s", "m": 2.0, "b": None},
        "79e8bf29893cb22d6c17541eca3d8dda",
        "f7bc5266d26a90cb05482b3b7df176ca",
    ),
    (
        "nested",
        {"row": {"id": 1, "tags": ["a", "b"]}},
        "92d6ec6a00f9548e43923b081661c765",
        "1e99ad87708974cf5c78fa219624c191",
    ),
    (
        "tuple",
        {"t": (1, "x")},
        "3ebfb8001cdbdd4af35c03e509644452",
        "4eb6e22181d2c097c52d39162ff664f0",
    ),
    ("bytes", {"b": b"ab"}, "5c74ab398086a19f02ab447ea2ba1a01", "483a73af3623bebb44b7d239e70aecf5"),
    (
        "nonstr_keys",
        {1: "a", 2: "b"},
        "5533442374ed04aa40f08dfae72b01f1",
        "af58c506852a43f99c24b514e450d14a",
    ),
    (
        "mixed_keys",
        {1: "a", "1": "b"},
        "ce5182439dc2a7171ef2c74ca3dac596",
        "644b98e9a07e2f797ae95f568b360c21",
    ),
    (
        "float_and_neg_int",
        {"k": 1.0, "j": -3},
        "981794ac323ddb48b83b87a6248bf4b0",
        "a713478e72dadcb2122347a293f18d96",
    ),
]


@pytest.mark.parametrize(
    ("value", "whole", "after"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN]
)
def test_saved_keys_never_change(value: Any, whole: str, after: str) -> None:
    assert digest(value) == whole
    assert digest_after("abc")(value) == after


def test_str_subclass_is_not_str() -> None:
    """A str subclass value (or key) keeps its own digest: not the fast path's str's."""
    assert digest({"text": Label("hello")}) != digest({"text": "hello"})
    assert digest_after("abc")({"text": Label("hello")}) != digest_after("abc")({"text": "hello"})
    assert digest({Label("text"): "hello"}) != digest({"text": "hello"})
