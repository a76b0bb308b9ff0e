"""Process many items in parallel under a cap; bad items fail alone and are reported.

python examples/map_partial_failure.py
"""

from __future__ import annotations

import asyncio

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, MapNode


async def score(text: str) -> dict[str, float]:
    await asyncio.sleep(0.01)
    if not text.strip():
        raise ValueError("empty text")
    return {"score": round(len(set(text)) / len(text), 3)}


with GraphNode(name="scoring") as graph:
    with MapNode(
        name="score_rows", inputs={"text": Each(PARENT["texts"])}, max_concurrency=20
    ) as rows:
        s = CodeNode(name="score", code_fn=score, inputs={"text": PARENT["text"]}, retry=2)
        s["score"] >> PARENT["score"]
        START >> s >> END
    report = CodeNode(
        name="report",
        code_fn=lambda scores, errors: {
            "ok": sum(e is None for e in errors),
            "failed": {i: str(e) for i, e in enumerate(errors) if e is not None},
            "mean": sum(s for s in scores if s is not None)
            / max(1, sum(e is None for e in errors)),
        },
        inputs={"scores": rows["score"], "errors": rows["error"]},
        outputs={"*": PARENT},
    )
    START >> rows >> report >> END


async def main() -> None:
    texts = [f"row {i} " * (i % 5) for i in range(200)]
    result = await Hush(graph).run({"texts": texts})
    print(f"ok={result['ok']} failed={len(result['failed'])} mean={result['mean']:.3f}")
    print("first failures:", list(result["failed"].items())[:3])


if __name__ == "__main__":
    asyncio.run(main())
