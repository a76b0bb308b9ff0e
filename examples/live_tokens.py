"""Watch a batch as it happens: every answer streamed token by token, with progress.

`engine.stream(inputs)` yields the run's events as they happen: each node
starting and ending, each token of an `LLMNode(stream=True)`, the map's
progress, and last `run_end` with the result `run()` would return. Here three
questions are answered at once and their tokens are shown as they arrive.

python examples/live_tokens.py

No inputs file: the questions are in the script. With no OPENAI_API_KEY the
bundled local server answers, streaming slowly enough to watch.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import aclosing

from _llm import ensure_llm, local_server

from hush import END, PARENT, START, Each, GraphNode, Hush, LLMNode, MapNode, PromptNode

MODEL = ensure_llm("gpt-4o-mini")
QUESTIONS = [
    "Why is the sky blue? Explain it to a ten year old.",
    "Giải thích ngắn gọn vì sao bầu trời có màu xanh.",
    "Jelaskan secara singkat mengapa langit berwarna biru.",
]

with GraphNode(name="live") as graph:
    with MapNode(name="answers", inputs={"q": Each(PARENT["questions"])}) as answers:
        prompt = PromptNode(name="prompt", inputs={"prompt": {"user": "{q}"}, "q": PARENT["q"]})
        llm = LLMNode(
            name="llm", resource_key=MODEL, inputs={"messages": prompt["messages"]}, stream=True
        )
        llm["content"] >> PARENT["answer"]
        START >> prompt >> llm >> END
    answers["answer"] >> PARENT["answers"]
    START >> answers >> END


async def main() -> None:
    server = local_server()
    if server is not None:
        server.configure(stream_chunk_chars=6, stream_chunk_delay=0.03, reply_chars=120)
    so_far: dict[str, str] = defaultdict(str)
    answered = 0
    async with aclosing(Hush(graph).stream({"questions": QUESTIONS})) as events:
        async for event in events:
            if event.kind == "token" and event.text:
                so_far[event.path] += event.text
                item = event.path.split("/")[1]
                print(f"{item:<12} {so_far[event.path][-60:]}", flush=True)
            elif event.kind == "progress" and event.counters is not None:
                if event.counters.done > answered:
                    answered = event.counters.done
                    print(f"-- {answered}/{event.counters.total} answered", flush=True)
            elif event.kind == "run_end" and event.result is not None:
                state = event.result["$state"]
                print(f"run {state.status} in {state.duration:.2f}s; first answer:")
                print(event.result["answers"][0])


if __name__ == "__main__":
    asyncio.run(main())
