"""Drive a tracer exactly as the engine does for a graph ``batch`` with a map of Prompt→LLM."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection
from typing import Any

from hand_spans import Hand, start_run

from hush.observability import Tracer

MODEL = "gpt-4o-mini"
RESOLVED_MODEL = "gpt-4o-mini-2024-07-18"


def usage_of(index: int) -> dict[str, int]:
    """The token usage reported for item ``index``."""
    return {"prompt_tokens": 10 + index, "completion_tokens": 5, "total_tokens": 15 + index}


def failure_of(index: int) -> RuntimeError:
    return RuntimeError(f"upstream 503 for item {index}")


async def drive_batch(
    tracer: Tracer,
    *,
    run_id: str,
    items: int = 20,
    failing: Collection[int] = (7,),
    threaded: Collection[int] = (),
    user_id: str = "user-42",
    session_id: str = "session-9",
    tags: tuple[str, ...] = ("nightly", "batch"),
    metadata: dict[str, Any] | None = None,
    flush_timeout: float = 5.0,
) -> None:
    """One run: ``batch`` → ``llm_batch`` (map) → ``llm_batch[i]`` (item) → prompt, llm → generation.

    Items run concurrently from ``asyncio.gather`` tasks; items in ``failing``
    fail in the LLM call; items in ``threaded`` do their node work from worker threads.
    """
    questions = [f"question {i}" for i in range(items)]
    root = start_run(
        tracer,
        "batch",
        run_id=run_id,
        input={"questions": questions},
        user_id=user_id,
        session_id=session_id,
        tags=list(tags),
        metadata=metadata or {"team": "ml", "dataset": "faq-v2"},
    )
    batch = root.child("llm_batch", kind="map", input={"count": items})

    async def run_item(index: int) -> str | None:
        item = batch.child(f"llm_batch[{index}]", kind="item", input={"q": questions[index]})
        await asyncio.sleep(random.uniform(0, 0.01))
        if index in threaded:
            return await asyncio.to_thread(_item_body, item, index, index in failing)
        return _item_body(item, index, index in failing)

    results = await asyncio.gather(*(run_item(i) for i in range(items)))
    batch.end(output={"answers": results})
    root.end(output={"answers": results}, error=None, status="ok")
    await tracer.flush(flush_timeout)


def _item_body(item: Hand, index: int, fails: bool) -> str | None:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": f"question {index}"},
    ]
    prompt = item.child("prompt", kind="node", input={"q": f"question {index}"})
    prompt.end(output={"messages": messages})
    llm = item.child("llm", kind="llm", input={"messages": messages})
    generation = llm.generation(
        "llm", model=MODEL, input=messages, model_parameters={"temperature": 0.0, "max_tokens": 64}
    )
    if fails:
        error = failure_of(index)
        generation.end(error=error)
        llm.end(error=error)
        item.end(error=error)
        return None
    answer = f"answer {index}"
    generation.end(output=answer, usage=usage_of(index), model=RESOLVED_MODEL)
    llm.end(output={"content": answer})
    item.end(output={"answer": answer})
    return answer
