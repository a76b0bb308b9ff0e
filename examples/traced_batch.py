"""The batch LLM graph, traced: to Langfuse when LANGFUSE_* keys are set, to any OTLP backend
(Jaeger, Tempo, Phoenix) when OTEL_EXPORTER_OTLP_ENDPOINT is set, else to a local JSONL file.

python examples/traced_batch.py
hush trace batch_trace.jsonl

No inputs file: the questions are in the script. TRACE_SAMPLE=0.2 traces about a fifth of
the items (and the failing one always); OTLP_PROJECT names the Phoenix project.
"""

from __future__ import annotations

import asyncio
import os

from _llm import ensure_llm

from hush import END, PARENT, START, Each, GraphNode, Hush, Labels, LLMNode, MapNode, PromptNode
from hush.observability import LocalTracer, Tracer, format_tree, read_trace

MODEL = ensure_llm("gpt-4o-mini")

with GraphNode(name="traced-batch") as graph:
    with MapNode(
        name="llm_batch", inputs={"query": Each(PARENT["queries"])}, max_concurrency=10
    ) as batch:
        prompt = PromptNode(
            name="prompt",
            inputs={
                "prompt": {"system": "Answer briefly.", "user": "{query}"},
                "query": PARENT["query"],
            },
        )
        llm = LLMNode(name="llm", resource_key=MODEL, inputs={"messages": prompt["messages"]})
        llm["content"] >> PARENT["answer"]
        START >> prompt >> llm >> END
    batch["answer"] >> PARENT["answers"]
    START >> batch >> END


async def main() -> None:
    tracer: Tracer
    sample = float(os.environ.get("TRACE_SAMPLE", "1"))
    if os.environ.get("LANGFUSE_PUBLIC_KEY"):
        from hush.observability import LangfuseTracer

        tracer = LangfuseTracer(sample=sample)
        where = "Langfuse"
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from hush.observability import OTLPTracer

        tracer = OTLPTracer(
            service_name="traced-batch",
            project_name=os.environ.get("OTLP_PROJECT"),
            sample=sample,
        )
        where = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    else:
        tracer = LocalTracer("batch_trace.jsonl", sample=sample)
        where = "batch_trace.jsonl"
    queries = [f"What is {i} squared?" for i in range(5)] + ["this one fails [[fail:400]]"]
    result = await Hush(graph).run(
        {"queries": queries}, tracer=tracer, labels=Labels(user_id="demo-user", tags=["example"])
    )
    print(
        f"{len(result['answers'])} answers, {len(result['$state'].errors)} error(s); trace sent to {where}"
    )
    if isinstance(tracer, LocalTracer):
        print(format_tree(read_trace("batch_trace.jsonl")))


if __name__ == "__main__":
    asyncio.run(main())
