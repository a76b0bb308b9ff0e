"""Document generation: chapters -> sections, in parallel, order preserved, failures isolated.

Replaces the usual hand-written plan (asyncio.gather with return_exceptions, zip back
to the original order, chapters kept sequential "to maintain order"): with hush,
chapters and sections both run in parallel under caps, outputs come back in input
order by construction, and a failed section is marked in place while its siblings
complete.

    python examples/chapter_sections.py
    hush run examples/chapter_sections.py:graph --inputs examples/inputs/chapters.json
"""

from __future__ import annotations

import asyncio
from typing import Any

from _llm import ensure_llm

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, LLMNode, MapNode, PromptNode

MODEL = ensure_llm("gpt-4o-mini")

OUTLINE = [
    {"chapter": "Introduction", "sections": ["Why pipelines fail", "What hush changes"]},
    {"chapter": "Building graphs", "sections": ["Nodes", "Edges", "Maps", "Branches"]},
    {"chapter": "Operating runs", "sections": ["Checkpoints", "Progress", "Tracing [[fail:400]]"]},
]


def assemble(
    chapter: str, sections: list[str], texts: list[Any], errors: list[Any]
) -> dict[str, Any]:
    return {
        "chapter": {
            "title": chapter,
            "sections": [
                {
                    "title": s,
                    "text": t if e is None else None,
                    "error": None if e is None else f"{e.type}: {e.message}",
                }
                for s, t, e in zip(sections, texts, errors, strict=True)
            ],
        }
    }


with GraphNode(name="document") as graph:
    with MapNode(
        name="chapters",
        inputs={"entry": Each(PARENT["outline"]), "topic": PARENT["topic"]},
        max_concurrency=3,
    ) as chapters:
        with MapNode(
            name="sections",
            inputs={
                "section": Each(PARENT["entry"]["sections"]),
                "chapter": PARENT["entry"]["chapter"],
                "topic": PARENT["topic"],
            },
            max_concurrency=8,
        ) as sections:
            prompt = PromptNode(
                name="prompt",
                inputs={
                    "prompt": {
                        "system": "You write one section of a book about {topic}.",
                        "user": "Chapter: {chapter}\nSection: {section}",
                    },
                    "topic": PARENT["topic"],
                    "chapter": PARENT["chapter"],
                    "section": PARENT["section"],
                },
            )
            write = LLMNode(
                name="write",
                resource_key=MODEL,
                inputs={"messages": prompt["messages"]},
                max_tokens=800,
            )
            write["content"] >> PARENT["text"]
            START >> prompt >> write >> END
        join = CodeNode(
            name="assemble",
            code_fn=assemble,
            inputs={
                "chapter": PARENT["entry"]["chapter"],
                "sections": PARENT["entry"]["sections"],
                "texts": sections["text"],
                "errors": sections["error"],
            },
            outputs={"chapter": PARENT},
        )
        START >> sections >> join >> END
    chapters["chapter"] >> PARENT["document"]
    START >> chapters >> END


async def main() -> None:
    result = await Hush(graph).run({"outline": OUTLINE, "topic": "workflow engines"})
    for chapter in result["document"]:
        print(chapter["title"])
        for s in chapter["sections"]:
            status = "ok" if s["error"] is None else f"FAILED ({s['error'][:60]})"
            print(f"  - {s['title']}: {status}")
    print(f"{len(result['$state'].errors)} section(s) failed; the others are complete and in order")


if __name__ == "__main__":
    asyncio.run(main())
