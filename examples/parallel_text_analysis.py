"""Summary, keywords and sentiment of a text from three parallel LLM calls, merged.

The guide's "Multiple prompts in parallel" example: the three calls overlap, so
the graph takes about as long as the slowest one.

    python examples/parallel_text_analysis.py "some text"
    hush run examples/parallel_text_analysis.py:graph --inputs examples/inputs/text.json
"""

from __future__ import annotations

import asyncio
import sys

from _llm import ensure_llm

from hush import END, PARENT, START, CodeNode, GraphNode, Hush, LLMNode, PromptNode

SMART = ensure_llm("gpt-4o")
CHEAP = ensure_llm("gpt-4o-mini")

TASKS = {
    "summary": ("Summarise the text in one sentence.", SMART),
    "keywords": ("List five keywords, comma separated.", CHEAP),
    "sentiment": ("Answer positive, negative or neutral.", CHEAP),
}

with GraphNode(name="text-analysis") as graph:
    llms = {}
    for task, (instruction, model) in TASKS.items():
        prompt = PromptNode(
            name=f"prompt_{task}",
            inputs={"prompt": {"system": instruction, "user": "{text}"}, "text": PARENT["text"]},
        )
        llm = LLMNode(
            name=f"llm_{task}",
            resource_key=model,
            inputs={"messages": prompt["messages"]},
            temperature=0,
        )
        START >> prompt >> llm
        llms[task] = llm
    merge = CodeNode(
        name="merge",
        code_fn=lambda summary, keywords, sentiment: {
            "summary": summary,
            "keywords": keywords,
            "sentiment": sentiment,
        },
        inputs={task: llm["content"] for task, llm in llms.items()},
        outputs={"*": PARENT},
    )
    list(llms.values()) >> merge >> END


async def main() -> None:
    text = (
        " ".join(sys.argv[1:])
        or "hush turned our ten-thousand-row labelling script into a short graph."
    )
    result = await Hush(graph).run({"text": text})
    for key in TASKS:
        print(f"{key:>9}: {result[key]}")
    state = result["$state"]
    calls = [state.nodes[f"text-analysis/llm_{t}"] for t in TASKS]
    longest = max(c.duration or 0 for c in calls)
    print(
        f"wall time {state.duration:.2f}s, slowest call {longest:.2f}s, sum of calls {sum(c.duration or 0 for c in calls):.2f}s"
    )


if __name__ == "__main__":
    asyncio.run(main())
