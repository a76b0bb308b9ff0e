"""Nested generation: job role -> topics -> situations -> questions -> lessons, merged in order.

Replaces a hand-made thread-pool pipeline (20-50 situations at once, 5 questions each,
one lesson per question, a global cap): each level is a MapNode with its own cap
(`max_concurrency`), `max_running_nodes` on the run bounds every LLM call in flight across
all levels (`--max-concurrency` on the command line), a failed lesson stays a hole in its
question instead of sinking the job, and the result comes back in the original structure.

    python examples/learning_path.py "AI Engineer"
    hush run examples/learning_path.py:graph --inputs examples/inputs/learning_path.json \
        --max-concurrency 16
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from _llm import ensure_llm
from pydantic import BaseModel, Field

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, LLMNode, MapNode, PromptNode

MODEL = ensure_llm("gpt-4o-mini")


class Situation(BaseModel):
    title: str


class Topic(BaseModel):
    name: str
    situations: list[Situation] = Field(min_length=3, max_length=3)


class Curriculum(BaseModel):
    topics: list[Topic] = Field(min_length=4, max_length=4)


class Questions(BaseModel):
    questions: list[str] = Field(min_length=5, max_length=5)


def llm_step(
    name: str, prompt: dict[str, str], variables: dict[str, Any], **options: Any
) -> tuple[PromptNode, LLMNode]:
    p = PromptNode(name=f"{name}_prompt", inputs={"prompt": prompt, **variables})
    llm = LLMNode(
        name=name,
        resource_key=MODEL,
        inputs={"messages": p["messages"]},
        temperature=0.7,
        **options,
    )
    p >> llm
    return p, llm


with GraphNode(name="learning-path") as graph:
    plan_prompt, plan = llm_step(
        "curriculum",
        {
            "system": "Design a curriculum of 4 topics with 3 workplace situations each.",
            "user": "Job role: {job_role}",
        },
        {"job_role": PARENT["job_role"]},
        response_format=Curriculum,
    )
    topics = CodeNode(
        name="topics",
        code_fn=lambda plan: {"topics": [t.model_dump() for t in plan.topics]},
        inputs={"plan": plan["parsed"]},
    )
    with MapNode(
        name="per_topic",
        inputs={"topic": Each(topics["topics"]), "job_role": PARENT["job_role"]},
        max_concurrency=4,
    ) as per_topic:
        with MapNode(
            name="per_situation",
            inputs={
                "situation": Each(PARENT["topic"]["situations"]),
                "job_role": PARENT["job_role"],
            },
            max_concurrency=10,
        ) as per_situation:
            q_prompt, q_llm = llm_step(
                "questions",
                {
                    "system": "Write 5 interview questions for this situation.",
                    "user": "{job_role}: {title}",
                },
                {"job_role": PARENT["job_role"], "title": PARENT["situation"]["title"]},
                response_format=Questions,
            )
            unpack = CodeNode(
                name="unpack",
                code_fn=lambda q: {"questions": q.questions},
                inputs={"q": q_llm["parsed"]},
            )
            with MapNode(
                name="per_question",
                inputs={"question": Each(unpack["questions"])},
                max_concurrency=5,
            ) as per_question:
                l_prompt, lesson = llm_step(
                    "lesson",
                    {
                        "system": "Write a short lesson answering the question.",
                        "user": "{question}",
                    },
                    {"question": PARENT["question"]},
                )
                lesson["content"] >> PARENT["lesson"]
                START >> l_prompt
                lesson >> END
            merge_situation = CodeNode(
                name="merge_situation",
                code_fn=lambda situation, questions, lessons, errors: {
                    "situation": {
                        **situation,
                        "questions": [
                            {"question": q, "lesson": lsn, "error": str(e) if e else None}
                            for q, lsn, e in zip(questions, lessons, errors, strict=True)
                        ],
                    }
                },
                inputs={
                    "situation": PARENT["situation"],
                    "questions": unpack["questions"],
                    "lessons": per_question["lesson"],
                    "errors": per_question["error"],
                },
                outputs={"situation": PARENT},
            )
            START >> q_prompt
            q_llm >> unpack >> per_question >> merge_situation >> END
        merge_topic = CodeNode(
            name="merge_topic",
            code_fn=lambda topic, situations: {
                "topic": {"name": topic["name"], "situations": situations}
            },
            inputs={"topic": PARENT["topic"], "situations": per_situation["situation"]},
            outputs={"topic": PARENT},
        )
        START >> per_situation >> merge_topic >> END
    merge = CodeNode(
        name="merge",
        code_fn=lambda job_role, topics: {
            "learning_path": {"job_role": job_role, "topics": topics}
        },
        inputs={"job_role": PARENT["job_role"], "topics": per_topic["topic"]},
        outputs={"learning_path": PARENT},
    )
    START >> plan_prompt
    plan >> topics >> per_topic >> merge >> END


async def main() -> None:
    role = " ".join(sys.argv[1:]) or "AI Engineer"
    result = await Hush(graph).run({"job_role": role}, max_running_nodes=16)
    path = result["learning_path"]
    state = result["$state"]
    lessons = sum(len(s["questions"]) for t in path["topics"] for s in t["situations"])
    print(
        f"{role}: {len(path['topics'])} topics, {lessons} lessons in {state.duration:.2f}s, {len(state.errors)} error(s)"
    )
    print(json.dumps(path["topics"][0]["situations"][0], indent=2)[:600])


if __name__ == "__main__":
    asyncio.run(main())
