"""One prompt per spreadsheet row, answers written back, checkpointed so a crash loses nothing.

The graph behind our users' thread-pool spreadsheet scripts, for when a row needs more
than one prompt: rows with a system prompt, a user input and an optional JSON
conversation history go through the LLM in parallel (capped, rate limited, retried);
the answer, response time, model and error of each row are written to a .csv or .xlsx
file. (For one prompt per row, `hush batch` does all of this in one command.)

    python examples/spreadsheet_batch.py [IN.csv|IN.xlsx] [OUT.csv|OUT.xlsx] [--checkpoint run.db --run-id ID]
    hush run examples/spreadsheet_batch.py:graph --inputs examples/inputs/spreadsheet.json \
        --checkpoint run.db --run-id feedback-1

The input is examples/data/feedback.csv; examples/inputs/spreadsheet.json names it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from _llm import ensure_llm

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, LLMNode, MapNode, PromptNode
from hush.batch import read_table, write_table

HERE = Path(__file__).resolve().parent
MODEL = ensure_llm("gpt-4o-mini")


def read_rows(path: str) -> dict[str, list[dict[str, Any]]]:
    """Rows of a .csv, .xlsx or .jsonl file (a relative path may also be relative to the
    repository, so the bundled inputs work from any directory)."""
    p = Path(path)
    if not p.is_absolute() and not p.exists() and (HERE.parent / p).exists():
        p = HERE.parent / p
    _, rows = read_table(p)
    return {"rows": rows}


def parse_history(history: Any) -> dict[str, Any]:
    """The conversation_history cell: empty, or a JSON list of chat messages."""
    if history in (None, ""):
        return {"history": None}
    messages = json.loads(history)
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m for m in messages
    ):
        raise ValueError(
            f"conversation_history must be a JSON list of messages, got {history[:80]!r}"
        )
    return {"history": messages}


def write_rows(
    path: str,
    rows: list[dict[str, Any]],
    answers: list[Any],
    latencies: list[Any],
    models: list[Any],
    errors: list[Any],
) -> dict[str, Any]:
    """Write the rows with answer, response_time, model and error columns."""
    out = []
    for row, answer, latency, model, error in zip(
        rows, answers, latencies, models, errors, strict=True
    ):
        out.append(
            {
                **row,
                "answer": answer if error is None else "",
                "response_time": round(latency, 3) if latency is not None else "",
                "model": model or "",
                "error": "" if error is None else f"{error.type}: {error.message}",
            }
        )
    p = Path(path)
    write_table(p, list(out[0]) if out else [], out)
    return {
        "written": len(out),
        "failed": sum(e is not None for e in errors),
        "output_file": str(p),
    }


with GraphNode(name="spreadsheet-batch") as graph:
    read = CodeNode(name="read", code_fn=read_rows, inputs={"path": PARENT["input"]})
    with MapNode(name="rows", inputs={"row": Each(read["rows"])}, max_concurrency=32) as rows:
        history = CodeNode(
            name="history",
            code_fn=parse_history,
            inputs={"history": PARENT["row"]["conversation_history"]},
        )
        prompt = PromptNode(
            name="prompt",
            inputs={
                "prompt": {"system": "{system_prompt}", "user": "{user_input}"},
                "system_prompt": PARENT["row"]["system_prompt"],
                "user_input": PARENT["row"]["user_input"],
                "history": history["history"],
            },
        )
        llm = LLMNode(
            name="llm",
            resource_key=MODEL,
            inputs={"messages": prompt["messages"]},
            temperature=0,
            max_tokens=2048,
        )
        llm["content"] >> PARENT["answer"]
        llm["latency"] >> PARENT["latency"]
        llm["model"] >> PARENT["model"]
        START >> history >> prompt >> llm >> END
    write = CodeNode(
        name="write",
        code_fn=write_rows,
        inputs={
            "path": PARENT["output"],
            "rows": read["rows"],
            "answers": rows["answer"],
            "latencies": rows["latency"],
            "models": rows["model"],
            "errors": rows["error"],
        },
        outputs={"*": PARENT},
    )
    START >> read >> rows >> write >> END


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", nargs="?", default=str(HERE / "data" / "feedback.csv"))
    parser.add_argument("output", nargs="?", default="feedback_answers.csv")
    parser.add_argument(
        "--checkpoint", default=None, help="SQLite file; rerun with the same --run-id to resume"
    )
    parser.add_argument("--run-id", default="spreadsheet-batch")
    args = parser.parse_args()
    result = await Hush(graph).run(
        {"input": args.input, "output": args.output},
        checkpoint=args.checkpoint,
        run_id=args.run_id if args.checkpoint else None,
    )
    state = result["$state"]
    print(
        f"{result['written']} rows written to {result['output_file']} ({result['failed']} failed) in {state.duration:.2f}s"
    )
    counters = state.iterations["spreadsheet-batch/rows"]
    if counters.resumed:
        print(f"{counters.resumed} rows came from the checkpoint")


if __name__ == "__main__":
    asyncio.run(main())
