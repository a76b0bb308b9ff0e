"""Send a run to a real Arize Phoenix and print what Phoenix stored (not part of CI).

Starts ``phoenix serve`` (give the executable with ``--phoenix``; it is heavy, so install it
in a virtualenv of its own: ``python -m venv /tmp/px && /tmp/px/bin/pip install
arize-phoenix``) on a free port with a fresh working directory, runs a map of prompt → LLM
calls against hush's local OpenAI-compatible server with ``OTLPTracer(project_name=...)``,
once as one trace and once with ``trace_per_item=True``, then lists, through Phoenix's REST
API, the spans (name, kind, parent, token counts) and the sessions it stored.

    python benchmarks/phoenix_check.py --phoenix /tmp/px/bin/phoenix
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hush import Labels, LLMNode, PromptNode
from hush.core import END, PARENT, START, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.observability import OTLPTracer
from hush.providers import get_registry
from hush.testing import MockLLMServer

PROJECT = "hush-check"
ITEMS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graph() -> Hush:
    with GraphNode(name="phoenix-check") as g:
        with MapNode(name="ask", inputs={"q": Each(PARENT["questions"])}, max_concurrency=3) as m:
            prompt = PromptNode(
                name="prompt",
                inputs={"prompt": {"system": "Be brief.", "user": "{q}"}, "q": PARENT["q"]},
            )
            llm = LLMNode(
                name="llm", resource_key="phoenix", inputs={"messages": prompt["messages"]}
            )
            llm["content"] >> PARENT["answer"]
            START >> prompt >> llm >> END
        m["answer"] >> PARENT["answers"]
        START >> m >> END
    return Hush(g)


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"Phoenix did not answer at {url} within {seconds:.0f} s")


async def send(base: str) -> None:
    async with MockLLMServer() as server:
        get_registry().register(
            "llm:phoenix",
            {"base_url": server.base_url, "api_key": "sk-local", "model": "gpt-4o-mini"},
        )
        questions = [f"question {i}" for i in range(ITEMS)]
        for run_id, per_item in (("phoenix-one-trace", False), ("phoenix-per-item", True)):
            tracer = OTLPTracer(base, project_name=PROJECT, trace_per_item=per_item)
            await graph().run(
                {"questions": questions},
                tracer=tracer,
                run_id=run_id,
                labels=Labels(session_id=run_id),
            )
            tracer.close()
        get_registry().unregister("llm:phoenix")


def stored(base: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    expected = 2 * (2 + ITEMS * 4)
    while time.monotonic() < deadline and len(spans) < expected:
        time.sleep(1.0)
        answer = httpx.get(f"{base}/v1/projects/{PROJECT}/spans", params={"limit": 1000})
        spans = answer.json().get("data", []) if answer.status_code == 200 else []
    sessions = httpx.get(f"{base}/v1/projects/{PROJECT}/sessions", params={"limit": 100})
    return spans, sessions.json().get("data", []) if sessions.status_code == 200 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phoenix", default="phoenix", help="the phoenix executable")
    parser.add_argument("--url", help="a Phoenix already running (then none is started)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(send(args.url))
        report(*stored(args.url))
        return
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as workdir:
        env = dict(
            os.environ,
            PHOENIX_WORKING_DIR=workdir,
            PHOENIX_PORT=str(port),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_GRPC_PORT=str(free_port()),
        )
        server = subprocess.Popen(
            [args.phoenix, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(f"{base}/healthz", 600)
            asyncio.run(send(base))
            spans, sessions = stored(base)
        finally:
            server.terminate()
            server.wait(30)
    report(spans, sessions)


def report(spans: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> None:
    by_trace = Counter(span["context"]["trace_id"] for span in spans)
    print(f"Phoenix stored {len(spans)} spans in {len(by_trace)} traces of project {PROJECT!r}")
    for span in sorted(spans, key=lambda s: (s["context"]["trace_id"], s["start_time"])):
        attributes = span.get("attributes", {})
        tokens = attributes.get("llm.token_count.total")
        print(
            f"  trace {span['context']['trace_id'][:8]}  {span['span_kind']:<6} "
            f"{span['name']:<18} parent={str(span.get('parent_id'))[:8]:<8}"
            + (f" tokens={tokens}" if tokens is not None else "")
        )
    print(f"sessions: {sorted(s.get('session_id') for s in sessions)}")


if __name__ == "__main__":
    main()
