"""A Batch API call's generation span carries the id of the batch that answered it."""

from __future__ import annotations

from otlp_receiver import OtlpReceiver

from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.observability import OTLPTracer
from hush.providers import LLMNode
from hush.providers.resources import get_registry
from hush.testing import MockLLMServer


async def test_the_generation_span_names_its_batch(receiver: OtlpReceiver) -> None:
    async with MockLLMServer() as server:
        get_registry().register(
            "llm:traced_batch",
            {
                "base_url": server.base_url,
                "api_key": "sk-test",
                "model": "gpt-4o-mini",
                "batch_window": 0.05,
                "batch_poll_interval": 0.01,
            },
        )
        try:
            with GraphNode(name="job") as graph:
                with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}) as items:
                    llm = LLMNode(
                        name="llm",
                        resource_key="traced_batch",
                        inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                        batch=True,
                    )
                    START >> llm >> END
                START >> items >> END
            tracer = OTLPTracer(receiver.url)
            await Hush(graph).run({"qs": ["one", "two", "three"]}, tracer=tracer)
        finally:
            get_registry().unregister("llm:traced_batch")
        (batch_id,) = server.batch_api.batches
    spans = receiver.wait_for_spans(1 + 1 + 3 * 3)
    generations = [s for s in spans if s.attributes.get("hush.kind") == "generation"]
    assert len(generations) == 3
    assert {s.attributes.get("hush.batch_id") for s in generations} == {batch_id}
