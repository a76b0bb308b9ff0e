"""ParserNode: typed fields out of a model's text, and errors that point into the text."""

from __future__ import annotations

from typing import Any

import pytest

import hush
from hush.core import (
    END,
    PARENT,
    START,
    CodeNode,
    GraphBuildError,
    GraphDefinitionError,
    GraphNode,
    Hush,
    ParseError,
    ParserNode,
)
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


async def parse(text: Any, **options: Any) -> dict[str, Any]:
    """Run one ParserNode on ``text``; its outputs (and ``$state``) go to the result."""
    with GraphNode(name="g") as g:
        node = ParserNode(
            name="parse", inputs={"text": PARENT["text"]}, outputs={"*": PARENT}, **options
        )
        START >> node >> END
    return await Hush(g).run({"text": text})


def failure(result: dict[str, Any]) -> str:
    (error,) = result["$state"].errors
    assert error.node == "g/parse"
    assert error.type == "ParseError"
    return error.message


FENCED = """Sure! Here is the classification:

```json
{
  "label": "positive",
  "score": "0.92",
  "count": 3.0,
  "urgent": "yes",
  "tags": ["a", "b"],
  "meta": {"source": "review", "lang": "en"}
}
```
Hope this helps."""


async def test_json_in_a_code_fence_gives_typed_fields() -> None:
    result = await parse(
        FENCED,
        extract=[
            "label",
            "score: float",
            "count: int",
            "urgent: bool",
            "tags: list",
            "meta.source",
            "meta: dict",
        ],
    )
    assert result["label"] == "positive"
    assert result["score"] == 0.92 and isinstance(result["score"], float)
    assert result["count"] == 3 and isinstance(result["count"], int)
    assert result["urgent"] is True
    assert result["tags"] == ["a", "b"]
    assert result["source"] == "review"
    assert result["meta"] == {"source": "review", "lang": "en"}
    assert result["$state"].errors == []


async def test_an_unclosed_fence_from_a_cut_reply_is_read() -> None:
    result = await parse('```json\n{"label": "cut", "n": 2}\n', extract=["label", "n: int"])
    assert (result["label"], result["n"]) == ("cut", 2)


async def test_json_with_prose_around_it_and_list_indices() -> None:
    text = 'The answer is {"items": [{"name": "x"}, {"name": "y"}]} as requested.'
    result = await parse(text, extract=["items.1.name", "items: list"])
    assert result["name"] == "y"
    assert result["items"] == [{"name": "x"}, {"name": "y"}]


async def test_broken_json_names_the_node_the_line_column_and_shows_a_snippet() -> None:
    text = '```json\n{\n  "label": "positive"\n  "score": 0.9\n}\n```'
    message = failure(await parse(text, extract=["label"]))
    assert message.startswith("ParserNode 'parse': cannot parse JSON: Expecting ',' delimiter")
    assert "at line 4, column 3" in message
    snippet, caret = message.splitlines()[-2:]
    assert snippet.strip() == '"score": 0.9'
    assert caret.index("^") == snippet.index('"score"')


async def test_missing_field_and_bad_type_are_clear_item_errors() -> None:
    message = failure(
        await parse('{"label": "x", "meta": {"lang": "en"}}', extract=["meta.source"])
    )
    assert message == ("ParserNode 'parse': field 'meta.source' not found: 'meta' has keys 'lang'")
    message = failure(await parse('{"score": "high"}', extract=["score: float"]))
    assert message.startswith(
        "ParserNode 'parse': field 'score: float': cannot convert 'high' to float"
    )
    message = failure(await parse({"label": "x"}, extract=["label"]))
    assert message == "ParserNode 'parse': text must be a string, got dict"


async def test_one_bad_item_in_a_map_does_not_sink_the_others() -> None:
    texts = ['{"n": "1"}', '{"n": 2', '{"n": 3}']
    with GraphNode(name="g") as g:
        with MapNode(
            name="each", inputs={"text": Each(PARENT["texts"])}, outputs={"n": PARENT}
        ) as body:
            node = ParserNode(
                name="parse",
                inputs={"text": PARENT["text"]},
                extract=["n: int"],
                outputs={"n": PARENT},
            )
            START >> node >> END
        START >> body >> END
    result = await Hush(g).run({"texts": texts})
    assert result["n"][0] == 1 and result["n"][2] == 3
    (error,) = result["$state"].errors
    assert "cannot parse JSON" in error.message and "line 1, column 8" in error.message


async def test_yaml() -> None:
    text = "```yaml\nlabel: negative\nscore: 0.1\nmeta:\n  source: chat\n```"
    result = await parse(text, format="yaml", extract=["label", "score: float", "meta.source"])
    assert (result["label"], result["score"], result["source"]) == ("negative", 0.1, "chat")
    message = failure(await parse("label: [unclosed\nscore: 1", format="yaml", extract=["label"]))
    assert message.startswith("ParserNode 'parse': cannot parse YAML:")
    assert "line 2" in message


async def test_xml_with_or_without_one_root_element() -> None:
    text = "<answer><label>spam</label><score>0.7</score><meta source='mail'/></answer>"
    result = await parse(
        text, format="xml", extract=["label", "score: float", "answer.meta.@source"]
    )
    assert (result["label"], result["score"], result["@source"]) == ("spam", 0.7, "mail")
    loose = "Reasoning first.\n<label>ham</label>\n<tag>a</tag><tag>b</tag>"
    result = await parse(loose, format="xml", extract=["label", "tag: list"])
    assert (result["label"], result["tag"]) == ("ham", ["a", "b"])
    message = failure(await parse("<a><b>x</a>", format="xml", extract=["b"]))
    assert message.startswith("ParserNode 'parse': cannot parse XML: mismatched tag")
    assert "line 1, column 10" in message


async def test_key_value_lines_ignore_case_bullets_and_bold() -> None:
    text = "Here you go:\n- **Label**: positive\n* Confidence Score = 0.8\nIs Urgent: no\n"
    result = await parse(
        text, format="key_value", extract=["label", "confidence_score: float", "is_urgent: bool"]
    )
    assert result["label"] == "positive"
    assert result["confidence_score"] == 0.8
    assert result["is_urgent"] is False
    message = failure(await parse("just prose", format="key_value", extract=["label"]))
    assert "no 'key: value' line at line 1, column 1" in message


async def test_regex_named_and_numbered_groups() -> None:
    text = "Verdict: APPROVED (confidence 87%)"
    result = await parse(
        text,
        format="regex",
        pattern=r"Verdict: (?P<verdict>\w+) \(confidence (\d+)%\)",
        extract=["verdict", "2: int"],
    )
    assert result["verdict"] == "APPROVED" and result["2"] == 87
    message = failure(
        await parse("nothing", format="regex", pattern=r"Verdict: (?P<v>\w+)", extract=["v"])
    )
    assert (
        message
        == "ParserNode 'parse': cannot parse: pattern 'Verdict: (?P<v>\\\\w+)' does not match 'nothing'"
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            {"format": "toml", "extract": ["a"]},
            "format 'toml' is not one of json, yaml, xml, key_value, regex",
        ),
        ({"extract": []}, "extract must be a non-empty list"),
        ({"extract": "label"}, "extract must be a non-empty list"),
        ({"extract": ["score: decimal"]}, "extract 'score: decimal': unknown type 'decimal'"),
        ({"extract": ["meta..source"]}, "a path is dot-separated non-empty names"),
        ({"extract": [3]}, "extract entries are strings"),
        ({"extract": ["a.name", "b.name"]}, "extract 'a.name' and 'b.name' both output 'name'"),
        ({"extract": ["error"]}, "would output 'error'"),
        ({"format": "regex", "extract": ["a"]}, "format 'regex' needs a pattern"),
        ({"format": "regex", "pattern": "(", "extract": ["a"]}, "pattern '(' is not a regex"),
        (
            {"format": "regex", "pattern": "(?P<a>x)", "extract": ["b"]},
            "extract 'b' names no group",
        ),
        ({"pattern": "x", "extract": ["a"]}, "pattern is only for format 'regex'"),
    ],
)
def test_bad_specs_are_errors_naming_the_node(options: dict[str, Any], problem: str) -> None:
    with GraphNode(name="g"), pytest.raises(GraphDefinitionError) as info:
        ParserNode(name="parse", inputs={"text": "x"}, **options)
    assert str(info.value).startswith("ParserNode 'parse': ")
    assert problem in str(info.value)


def test_text_input_is_required_and_outputs_are_known_to_the_build() -> None:
    with (
        GraphNode(name="g"),
        pytest.raises(GraphDefinitionError, match="ParserNode 'p': inputs need 'text'"),
    ):
        ParserNode(name="p", inputs={}, extract=["a"])
    with GraphNode(name="g") as g:
        node = ParserNode(
            name="p", inputs={"text": PARENT["t"]}, extract=["a.label", "score: float"]
        )
        use = CodeNode(name="use", code_fn=lambda v: {}, inputs={"v": node["a"]})
        START >> node >> use >> END
    with pytest.raises(GraphBuildError) as info:
        g.build()
    assert "it produces: error, label, score" in info.value.problems[0]


def test_exported_from_hush_and_hush_core() -> None:
    assert hush.ParserNode is ParserNode
    assert issubclass(ParseError, ValueError)
