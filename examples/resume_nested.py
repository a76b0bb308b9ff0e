"""Resume a nested generation after a failure: only the failed work runs again.

Topics -> an outline per topic -> one LLM-written section per outline point,
checkpointed. In the first run one section fails its check; running again
with the same run_id reuses every outline and every finished section (each
saved under a digest of its inputs, so a section is only ever reused for the
same topic and point) and redoes just the failed one.

python examples/resume_nested.py
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from _llm import ensure_llm

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, LLMNode, MapNode, PromptNode

ran: Counter[str] = Counter()
flaky = {"pricing: objections"}


async def outline(topic: str) -> dict[str, list[str]]:
    ran["outline"] += 1
    return {"points": [f"{topic}: {part}" for part in ("basics", "examples", "objections")]}


def check(point: str, text: str) -> dict[str, str]:
    ran["section"] += 1
    if point in flaky:
        flaky.discard(point)
        raise ValueError(f"section '{point}' failed review; it runs again on resume")
    return {"section": text}


def build(model: str) -> GraphNode:
    with GraphNode(name="handbook") as graph:
        with MapNode(name="topics", inputs={"topic": Each(PARENT["topics"])}) as topics:
            plan = CodeNode(name="outline", code_fn=outline, inputs={"topic": PARENT["topic"]})
            with MapNode(
                name="sections", inputs={"point": Each(plan["points"])}, max_concurrency=8
            ) as sections:
                prompt = PromptNode(
                    name="prompt",
                    inputs={"prompt": "Write one paragraph on {point}.", "point": PARENT["point"]},
                )
                llm = LLMNode(
                    name="write", resource_key=model, inputs={"messages": prompt["messages"]}
                )
                review = CodeNode(
                    name="check",
                    code_fn=check,
                    inputs={"point": PARENT["point"], "text": llm["content"]},
                    outputs={"section": PARENT},
                )
                START >> prompt >> llm >> review >> END
            sections["section"] >> PARENT["sections"]
            START >> plan >> sections >> END
        topics["sections"] >> PARENT["handbook"]
        START >> topics >> END
    return graph


async def main() -> None:
    engine = Hush(build(ensure_llm()))
    inputs = {"topics": ["onboarding", "pricing"]}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "handbook.db"
        for attempt in (1, 2):
            ran.clear()
            result = await engine.run(inputs, checkpoint=db, run_id="handbook", progress=False)
            state = result["$state"]
            print(
                f"run {attempt}: {state.status}, {len(state.errors)} error(s); "
                f"ran {ran['outline']} outline(s) and {ran['section']} section check(s); "
                f"{state.iterations['handbook/topics'].resumed} topic(s) resumed"
            )
            for error in state.errors:
                print(f"  {error.node}: {error.message}")
    for topic, sections in zip(inputs["topics"], result["handbook"], strict=True):
        print(f"{topic}: {len(sections)} sections, first: {sections[0][:60]}...")


if __name__ == "__main__":
    asyncio.run(main())
