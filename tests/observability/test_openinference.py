"""OpenInference attributes (Phoenix) on OTLP spans, decoded from the loopback receiver."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphs import QUERIES, batch_graph
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import OtlpReceiver

from hush.core import Hush
from hush.observability import OTLPTracer
from hush.observability.otel import OTelTracer
from hush.testing import MockLLMServer


async def test_llm_spans_are_kind_llm_and_nodes_chain_with_their_text_and_tokens(
    llm_resource: MockLLMServer, receiver: OtlpReceiver
) -> None:
    tracer = OTLPTracer(receiver.url, project_name="batch-project")
    await Hush(batch_graph()).run({"queries": QUERIES}, tracer=tracer, run_id="oi-run")

    spans = receiver.wait_for_spans(82)
    assert {s.resource["openinference.project.name"] for s in spans} == {"batch-project"}
    generations = [s for s in spans if s.attributes.get("hush.kind") == "generation"]
    others = [s for s in spans if s.attributes.get("hush.kind") != "generation"]
    assert len(generations) == 20 and others
    assert {s.attributes["openinference.span.kind"] for s in others} == {"CHAIN"}
    prompts = [s for s in others if s.name == "prompt"]
    assert all(s.attributes["input.value"] for s in prompts)
    assert {s.attributes["input.mime_type"] for s in prompts} <= {
        "application/json",
        "text/plain",
    }
    answered = [g for g in generations if "output.value" in g.attributes]
    assert len(answered) == 19  # item 13 fails with HTTP 400
    for span in generations:
        attributes = span.attributes
        assert attributes["openinference.span.kind"] == "LLM"
        assert attributes["llm.model_name"] == "gpt-4o-mini"
        assert attributes["llm.provider"] == "openai"
        assert json.loads(attributes["llm.invocation_parameters"])["temperature"] == 0
        assert attributes["llm.input_messages.0.message.role"] in {"system", "user"}
        assert "question" in json.dumps(
            [v for k, v in attributes.items() if k.startswith("llm.input_messages")]
        )
    for span in answered:
        attributes = span.attributes
        assert attributes["llm.output_messages.0.message.role"] == "assistant"
        assert "question" in attributes["llm.output_messages.0.message.content"]
        prompt, completion = (
            attributes["llm.token_count.prompt"],
            attributes["llm.token_count.completion"],
        )
        assert prompt > 0 and completion > 0
        assert attributes["llm.token_count.total"] == prompt + completion


class Masking(OTelTracer):
    """A backend of someone's that masks a secret in every input and output it sends."""

    def text(self, value: Any) -> str:
        return super().text(value).replace("hunter2", "***")


@pytest.mark.parametrize("openinference", [True, False])
def test_a_subclass_text_sees_small_flat_values_too(openinference: bool) -> None:
    """The shortcut for an item's small flat inputs does not go around a subclass's ``text``."""
    tracer = Masking(TracerProvider(), own=True)
    tracer.openinference = openinference
    try:
        for value in ({"password": "hunter2"}, {"password": ["hunter2"]}):
            assert "hunter2" not in str(tracer.io("input", value))
    finally:
        tracer.close()


def test_io_under_another_prefix_keeps_its_own_keys() -> None:
    tracer = OTelTracer(TracerProvider(), own=True)
    try:
        assert tracer.io("metadata", {"a": 1}) == {
            "metadata.value": '{"a": 1}',
            "metadata.mime_type": "application/json",
        }
    finally:
        tracer.close()
