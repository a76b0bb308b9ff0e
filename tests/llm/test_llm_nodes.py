"""PromptNode and LLMNode over real HTTP to the local server through the real openai client."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from hush.core import END, PARENT, START, CodeNode, GraphBuildError, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, PromptNode
from hush.testing import MockLLMServer
from tests.llm.conftest import SECRET


def batch_graph(resource: str, max_concurrency: int = 5, **llm_options: object) -> GraphNode:
    """The guide's 'Batch LLM with MapNode' example, as written."""
    with GraphNode(name="batch-llm") as graph:
        with MapNode(
            name="llm_batch",
            inputs={"query": Each(PARENT["queries"])},
            max_concurrency=max_concurrency,
        ) as map_node:
            prompt = PromptNode(
                name="prompt",
                inputs={
                    "prompt": {"system": "Answer briefly.", "user": "{query}"},
                    "query": PARENT["query"],
                },
            )
            llm = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": prompt["messages"]},
                **llm_options,
            )
            llm["content"] >> PARENT["answer"]
            START >> prompt >> llm >> END

        map_node["answer"] >> PARENT["answers"]
        map_node["error"] >> PARENT["errors"]
        START >> map_node >> END
    return graph


async def test_guide_parallel_llm_calls(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("gpt-4", server.base_url, model="gpt-4")
    register("gpt-4-mini", server.base_url)
    with GraphNode(name="parallel-llm") as graph:
        prompt_summary = PromptNode(
            name="prompt_summary",
            inputs={
                "prompt": {"system": "Tóm tắt văn bản sau.", "user": "{text}"},
                "text": PARENT["text"],
            },
        )
        prompt_keywords = PromptNode(
            name="prompt_keywords",
            inputs={
                "prompt": {"system": "Liệt kê keywords.", "user": "{text}"},
                "text": PARENT["text"],
            },
        )
        prompt_sentiment = PromptNode(
            name="prompt_sentiment",
            inputs={
                "prompt": {"system": "Phân tích sentiment.", "user": "{text}"},
                "text": PARENT["text"],
            },
        )
        llm_summary = LLMNode(
            name="llm_summary",
            resource_key="gpt-4",
            inputs={"messages": prompt_summary["messages"]},
        )
        llm_keywords = LLMNode(
            name="llm_keywords",
            resource_key="gpt-4-mini",
            inputs={"messages": prompt_keywords["messages"]},
        )
        llm_sentiment = LLMNode(
            name="llm_sentiment",
            resource_key="gpt-4-mini",
            inputs={"messages": prompt_sentiment["messages"]},
        )
        merge = CodeNode(
            name="merge",
            code_fn=lambda summary, keywords, sentiment: {
                "summary": summary,
                "keywords": keywords,
                "sentiment": sentiment,
            },
            inputs={
                "summary": llm_summary["content"],
                "keywords": llm_keywords["content"],
                "sentiment": llm_sentiment["content"],
            },
            outputs={"*": PARENT},
        )
        START >> [prompt_summary, prompt_keywords, prompt_sentiment]
        prompt_summary >> llm_summary
        prompt_keywords >> llm_keywords
        prompt_sentiment >> llm_sentiment
        [llm_summary, llm_keywords, llm_sentiment] >> merge >> END

    server.configure(latency=0.2)
    result = await Hush(graph).run({"text": "hush makes batch LLM jobs safe"})
    assert result["summary"] == "[gpt-4] reply to: hush makes batch LLM jobs safe"
    assert result["keywords"].startswith("[gpt-4o-mini] reply to:")
    assert server.peak_in_flight == 3
    systems = sorted(r.body["messages"][0]["content"] for r in server.requests)
    assert systems == ["Liệt kê keywords.", "Phân tích sentiment.", "Tóm tắt văn bản sau."]
    state = result["$state"]
    assert state.nodes["parallel-llm/llm_summary"].outputs["usage"]["total_tokens"] > 0


async def test_guide_batch_llm_with_map_node(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("gpt-4-mini", server.base_url)
    server.configure(latency=0.02)
    queries = [f"question {i}" for i in range(30)]
    result = await Hush(batch_graph("gpt-4-mini")).run({"queries": queries})
    assert result["answers"] == [f"[gpt-4o-mini] reply to: {q}" for q in queries]
    assert server.peak_in_flight == 5
    assert all(
        r.body["messages"][0] == {"role": "system", "content": "Answer briefly."}
        for r in server.requests
    )


async def test_every_item_answered_despite_20_percent_500s(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("flaky", server.base_url, max_retries=8)
    server.configure(error_rate_500=0.2, seed=3)
    queries = [f"q{i}" for i in range(200)]
    result = await Hush(batch_graph("flaky", max_concurrency=20)).run({"queries": queries})
    assert result["errors"] == [None] * 200
    assert result["answers"] == [f"[gpt-4o-mini] reply to: {q}" for q in queries]
    assert server.status_counts[500] > 20


async def test_400_fails_only_that_item_fast_with_server_message(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("m", server.base_url)
    queries = ["fine 1", "bad [[fail:400]]", "fine 2"]
    result = await Hush(batch_graph("m")).run({"queries": queries})
    assert result["answers"][0] and result["answers"][2]
    err = result["errors"][1]
    assert err.node == "batch-llm/llm_batch[1]/llm"
    assert "Injected fault: HTTP 400" in err.message and "400" in err.message
    bad = [r for r in server.requests if "[[fail:400]]" in r.body["messages"][-1]["content"]]
    assert len(bad) == 1


async def test_hung_request_times_out_and_is_retried(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("slow", server.base_url, timeout=0.3)
    result = await Hush(batch_graph("slow")).run({"queries": ["hang once [[fail-once:hang]]"]})
    assert result["errors"] == [None]
    assert result["answers"][0].startswith("[gpt-4o-mini] reply to: hang once")
    assert len(server.requests) == 2


async def test_fallback_takes_over_when_a_resource_is_down(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    down = MockLLMServer()
    await down.start()
    dead_url = down.base_url
    await down.stop()
    register("down", dead_url, max_retries=1, timeout=1)
    register("backup", server.base_url, model="backup-model")
    result = await Hush(batch_graph("down", fallback=["backup"])).run({"queries": ["hello"]})
    assert result["errors"] == [None]
    assert result["answers"] == ["[backup-model] reply to: hello"]


class Verdict(BaseModel):
    label: str
    confidence: float
    reasons: list[str]


async def test_structured_output_and_malformed_reply(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("structured", server.base_url, max_retries=1)
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"text": Each(PARENT["texts"])}) as m:
            p = PromptNode(name="p", inputs={"prompt": "Classify: {text}", "text": PARENT["text"]})
            llm = LLMNode(
                name="llm",
                resource_key="structured",
                inputs={"messages": p["messages"]},
                response_format=Verdict,
            )
            llm["parsed"] >> PARENT["verdict"]
            START >> p >> llm >> END
        m["verdict"] >> PARENT["verdicts"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    result = await Hush(g).run({"texts": ["good", "broken [[malformed]]"]})
    assert isinstance(result["verdicts"][0], Verdict)
    assert result["errors"][0] is None
    assert result["verdicts"][1] is None
    err = result["errors"][1]
    assert err.type == "LLMCallError"
    assert "malformed" in err.message.lower() or "json" in err.message.lower()


async def test_generation_parameters_pass_through(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("p", server.base_url)
    with GraphNode(name="g") as g:
        llm = LLMNode(
            name="llm",
            resource_key="p",
            inputs={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            temperature=0.1,
            outputs={"*": PARENT},
        )
        START >> llm >> END
    result = await Hush(g).run()
    body = server.requests[0].body
    assert body["temperature"] == 0.1 and body["max_tokens"] == 3
    assert result["finish_reason"] == "length"
    assert set(result["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert result["model"] == "gpt-4o-mini" and result["tool_calls"] is None


async def test_no_secret_in_result_state_or_logs(
    server: MockLLMServer, register: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    register("s", server.base_url)
    caplog.set_level(logging.DEBUG)
    result = await Hush(batch_graph("s")).run(
        {"queries": ["ok", "bad [[fail:400]]", "x [[fail-once:500]]"]}
    )
    text = repr(result) + repr(result["$state"].to_dict()) + caplog.text
    text += "".join(e.traceback for e in result["$state"].errors)
    assert SECRET not in text
    assert server.requests[0].headers.get("Authorization") is None


async def test_unknown_resource_key_is_a_build_error_naming_it() -> None:
    with GraphNode(name="g") as g:
        llm = LLMNode(name="llm", resource_key="no-such-model", inputs={"messages": []})
        START >> llm >> END
    with pytest.raises(GraphBuildError) as info:
        g.build()
    (problem,) = info.value.problems
    assert problem.startswith("g/llm: ")
    assert "no-such-model" in problem


async def test_prompt_node_forms_history_and_escapes() -> None:
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    with GraphNode(name="g") as g:
        as_str = PromptNode(
            name="s", inputs={"prompt": "Hi {name} {{literal}}", "name": PARENT["name"]}
        )
        as_dict = PromptNode(
            name="d",
            inputs={
                "prompt": {"system": "Be {tone}.", "user": "{q}"},
                "tone": "brief",
                "q": PARENT["name"],
                "history": history,
            },
        )
        as_list = PromptNode(
            name="l",
            inputs={
                "prompt": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "U {name}"},
                ],
                "name": PARENT["name"],
                "history": history,
            },
        )
        out = CodeNode(
            name="out",
            code_fn=lambda s, d, l: {"s": s, "d": d, "l": l},  # noqa: E741
            inputs={"s": as_str["messages"], "d": as_dict["messages"], "l": as_list["messages"]},
            outputs={"*": PARENT},
        )
        START >> [as_str, as_dict, as_list] >> out >> END
    result = await Hush(g).run({"name": "Ana"})
    assert result["s"] == [{"role": "user", "content": "Hi Ana {literal}"}]
    assert result["d"] == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "user", "content": "Ana"},
    ]
    assert result["l"] == [
        {"role": "system", "content": "S"},
        *history,
        {"role": "user", "content": "U Ana"},
    ]


async def test_prompt_missing_variable_errors() -> None:
    with GraphNode(name="g") as g:
        p = PromptNode(name="p", inputs={"prompt": "Hello {who} from {where}", "who": "x"})
        START >> p >> END
    with pytest.raises(GraphBuildError, match="g/p: prompt variable\\(s\\) where have no input"):
        g.build()
    with GraphNode(name="h") as h:
        dyn = PromptNode(name="dyn", inputs={"prompt": PARENT["template"], "who": "x"})
        START >> dyn >> END
    state = (await Hush(h).run({"template": "Hi {who} and {other}"}))["$state"]
    err = state.nodes["h/dyn"].error
    assert err.message == "PromptNode 'dyn': prompt variable(s) other have no input (inputs: who)"


async def test_node_level_retry_on_llm_and_prompt_nodes(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("once", server.base_url, max_retries=0)
    with GraphNode(name="g") as g:
        p = PromptNode(name="p", inputs={"prompt": "{q}", "q": "again [[fail-once:500]]"}, retry=2)
        llm = LLMNode(
            name="llm",
            resource_key="once",
            inputs={"messages": p["messages"]},
            retry={"attempts": 3, "initial": 0, "jitter": 0},
            outputs={"content": PARENT},
        )
        START >> p >> llm >> END
    result = await Hush(g).run()
    assert result["content"].startswith("[gpt-4o-mini] reply to: again")
    assert result["$state"].nodes["g/llm"].attempts == 2
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("prompt", "history", "message"),
    [
        ({"system": "s", "user": 5}, None, "prompt['user'] must be a string or a list of content"),
        ("hi", ["not a message"], "history message 0 must be a dict with 'role' and 'content'"),
        (
            [{"content": "no role"}],
            None,
            "prompt message 0 must be a dict with 'role' and 'content'",
        ),
    ],
)
async def test_bad_prompt_shapes_are_clear_errors(
    prompt: object, history: object, message: str
) -> None:
    with GraphNode(name="g") as g:
        p = PromptNode(name="p", inputs={"prompt": PARENT["prompt"], "history": PARENT["history"]})
        START >> p >> END
    err = (await Hush(g).run({"prompt": prompt, "history": history}))["$state"].nodes["g/p"].error
    assert err.type == "PromptError"
    assert err.message.startswith("PromptNode 'p': ")
    assert message in err.message


async def test_llm_retry_is_the_providers_loop_and_never_multiplies(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("down", server.base_url, max_retries=6)
    graph = batch_graph("down", retry=3)
    result = await Hush(graph).run({"queries": ["bad [[fail:400]]", "busy [[fail:503]]"]})
    sent = Counter(r.body["messages"][-1]["content"] for r in server.requests)
    assert sent == {"bad [[fail:400]]": 1, "busy [[fail:503]]": 3}
    bad, busy = result["errors"]
    assert "HTTP 400" in bad.message and not bad.retryable
    assert "HTTP 503" in busy.message and "(after 3 attempts)" in busy.message


async def test_llm_timeout_bounds_each_request_not_the_wait_for_a_slot(
    register: Callable[..., str],
) -> None:
    async with MockLLMServer(latency=0.2) as slow:
        register("one-at-a-time", slow.base_url, max_concurrency=1, max_retries=0)
        result = await Hush(batch_graph("one-at-a-time", timeout=0.5)).run(
            {"queries": [f"q{i}" for i in range(4)]}
        )
        assert result["errors"] == [None] * 4
        assert slow.peak_in_flight == 1
        register("hangs", slow.base_url, max_retries=5)
        start = time.monotonic()
        result = await Hush(batch_graph("hangs", timeout=0.3, retry=2)).run(
            {"queries": ["stuck [[hang]]"]}
        )
        assert time.monotonic() - start < 3
        assert "no reply within 0.3s (timeout) (after 2 attempts)" in result["errors"][0].message
        assert len([r for r in slow.requests if "stuck" in str(r.body)]) == 2


async def test_placeholders_are_filled_in_multimodal_content_parts(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("vision", server.base_url)
    parts = [
        {"type": "text", "text": "Describe: {query}"},
        {"type": "image_url", "image_url": {"url": "{url}"}},
    ]
    with GraphNode(name="g") as g:
        p = PromptNode(
            name="p",
            inputs={
                "prompt": [{"role": "user", "content": parts}],
                "query": PARENT["query"],
                "url": PARENT["url"],
            },
        )
        llm = LLMNode(name="llm", resource_key="vision", inputs={"messages": p["messages"]})
        llm["content"] >> PARENT["answer"]
        START >> p >> llm >> END
    result = await Hush(g).run({"query": "a cat", "url": "https://example.com/cat.png"})
    assert result["$state"].status == "ok"
    sent = server.requests[-1].body["messages"][0]["content"]
    assert sent == [
        {"type": "text", "text": "Describe: a cat"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]


def test_a_missing_variable_in_a_content_part_fails_the_build() -> None:
    with GraphNode(name="g") as g:
        p = PromptNode(
            name="p",
            inputs={
                "prompt": {"user": [{"type": "image_url", "image_url": {"url": "{url}"}}]},
                "query": "x",
            },
        )
        START >> p >> END
    with pytest.raises(GraphBuildError, match=r"g/p: prompt variable\(s\) url have no input"):
        g.build()


async def test_an_llm_timeout_longer_than_the_resources_is_honoured(
    register: Callable[..., str],
) -> None:
    async with MockLLMServer(latency=0.8) as slow:
        register("short-timeout", slow.base_url, timeout=0.3, max_retries=0)
        result = await Hush(batch_graph("short-timeout", timeout=3)).run({"queries": ["q"]})
    assert result["errors"] == [None]
