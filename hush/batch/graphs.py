"""The graphs behind a batch: a map over the rows' requests, or over packs of them.

One row alone: ``PromptNode`` (system, history, user) then ``LLMNode``; with a
schema the reply is validated, and a reply that does not validate is asked once
more with the validation error (a ``BranchNode``), then fails the row. A pack:
one request for N numbered rows, its reply split by row number, the rows it
left unanswered asked alone by an inner map, then merged. Every row's result
carries its request key, so answers go back to rows by content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hush.batch.answers import failed
from hush.batch.packing import pack_format, pack_messages, split_reply
from hush.batch.schema import AnswerSchema, SchemaMismatch
from hush.core import END, PARENT, START, BranchNode, CodeNode, Each, GraphNode
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode, PromptNode
from hush.providers.tokens import estimate_prompt_tokens

ANSWER_KEYS = ("content", "latency", "queued", "model", "usage", "cost")
"""What an LLM call gives a row's result (``queued`` where the LLM node reports it)."""
ALONE_CONCURRENCY = 4
"""Rows of one pack asked again alone at once."""

Answered = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class CallSpec:
    """What every row's request is made of."""

    model: str
    user: str
    """The prompt template, placeholders renamed to the request's field aliases."""
    system: str | None
    aliases: Sequence[str]
    params: Mapping[str, Any] = field(default_factory=dict)
    schema: AnswerSchema | None = None
    history: bool = False
    batch_api: bool = False
    """Send the calls through the provider's Batch API (``LLMNode(batch=True)``)."""


def rows_graph(spec: CallSpec, concurrency: int, answered: Answered) -> GraphNode:
    """A map over ``PARENT["requests"]``, one request per row; outputs ``answer``, ``error``."""
    with GraphNode(name="batch") as graph:
        with MapNode(
            name="rows",
            inputs={"request": Each(PARENT["requests"])},
            max_concurrency=concurrency,
        ) as items:
            _ask_alone(spec, answered)
        items["answer"] >> PARENT["answer"]
        items["error"] >> PARENT["error"]
        START >> items >> END
    return graph


def packs_graph(spec: CallSpec, concurrency: int, answered: Answered) -> GraphNode:
    """A map over ``PARENT["packs"]`` (lists of requests), one request per pack; outputs
    ``answers`` (a list of row results per pack), ``stats`` and ``error``."""
    with GraphNode(name="batch") as graph:
        with MapNode(
            name="packs", inputs={"pack": Each(PARENT["packs"])}, max_concurrency=concurrency
        ) as packs:
            ask = CodeNode(
                name="pack_prompt",
                code_fn=lambda pack: {"messages": pack_messages(spec.system, spec.user, pack)},
                inputs={"pack": PARENT["pack"]},
                thread=False,
            )
            llm = LLMNode(
                name="llm",
                resource_key=spec.model,
                batch=spec.batch_api,
                inputs={"messages": ask["messages"]},
                response_format=pack_format(spec.schema),
                **spec.params,
            )

            def split(pack: list[dict[str, Any]], **call: Any) -> dict[str, Any]:
                found = split_reply(call.get("content"), len(pack), spec.schema)
                share = 1 / len(pack)
                results = [
                    None if item is None else _result(call, share, item[0], item[1], spec)
                    for item in found
                ]
                missing = [r for r, result in zip(pack, results, strict=True) if result is None]
                return {
                    "results": results,
                    "missing": missing,
                    "share": _result(call, share, None, None, spec),
                }

            keys = _keys(llm)
            splitter = CodeNode(
                name="split",
                code_fn=split,
                inputs={"pack": PARENT["pack"]} | {k: llm[k] for k in keys},
                thread=False,
            )
            with MapNode(
                name="alone",
                inputs={"request": Each(splitter["missing"])},
                max_concurrency=ALONE_CONCURRENCY,
            ) as alone:
                _ask_alone(spec, None)

            def merge(
                pack: list[dict[str, Any]],
                results: list[dict[str, Any] | None],
                share: dict[str, Any],
                again: list[dict[str, Any] | None],
                errors: list[Any],
                usage: Mapping[str, Any] | None,
            ) -> dict[str, Any]:
                retried = iter(zip(again, errors, strict=True))
                rows = []
                for request, result in zip(pack, results, strict=True):
                    if result is None:
                        answer, error = next(retried)
                        if error is not None or answer is None:
                            result = failed(_error_text(error or "no answer"))
                        else:
                            result = _plus_share(answer, share)
                    result = {**result, "key": request["key"]}
                    if not result.get("error"):
                        answered(request["key"], result)
                    rows.append(result)
                stats = {
                    "requests": 1 + len(again),
                    "prompt_tokens": (usage or {}).get("prompt_tokens", 0)
                    + sum((a or {}).get("prompt_tokens") or 0 for a in again),
                    "alone_estimate": sum(_alone_tokens(spec, r) for r in pack),
                }
                return {"answers": rows, "stats": stats}

            merger = CodeNode(
                name="merge",
                code_fn=merge,
                inputs={
                    "pack": PARENT["pack"],
                    "results": splitter["results"],
                    "share": splitter["share"],
                    "again": alone["answer"],
                    "errors": alone["error"],
                    "usage": llm["usage"],
                },
                outputs={"answers": PARENT, "stats": PARENT},
                thread=False,
            )
            START >> ask >> llm >> splitter >> alone >> merger >> END
        for key in ("answers", "stats", "error"):
            packs[key] >> PARENT[key]
        START >> packs >> END
    return graph


def _ask_alone(spec: CallSpec, answered: Answered | None) -> None:
    """One row's call inside the current graph: reads ``PARENT["request"]``, writes
    ``PARENT["answer"]`` (its result); ``answered`` hears of each answer."""
    template: dict[str, str] = {"user": spec.user}
    if spec.system is not None:
        template = {"system": spec.system, **template}
    fields = PARENT["request"]["fields"]
    inputs: dict[str, Any] = {"prompt": template, **{a: fields[a] for a in spec.aliases}}
    if spec.history:
        inputs["history"] = PARENT["request"]["history"]
    prompt = PromptNode(name="prompt", inputs=inputs)
    response = spec.schema.response_format() if spec.schema is not None else None
    llm = LLMNode(
        name="llm",
        resource_key=spec.model,
        batch=spec.batch_api,
        inputs={"messages": prompt["messages"]},
        response_format=response,
        **spec.params,
    )
    keys = _keys(llm)

    def finish(
        request: dict[str, Any], parsed: dict[str, Any] | None = None, **call: Any
    ) -> dict[str, Any]:
        result = {**_result(call, 1.0, call.get("content"), parsed, spec), "key": request["key"]}
        if answered is not None:
            answered(request["key"], result)
        return {"answer": result}

    answer_inputs: dict[str, Any] = {"request": PARENT["request"]}
    if spec.schema is None:
        answer = CodeNode(
            name="answer",
            code_fn=finish,
            inputs=answer_inputs | {k: llm[k] for k in keys},
            outputs={"answer": PARENT},
            thread=False,
        )
        START >> prompt >> llm >> answer >> END
        return
    schema = spec.schema

    def check(content: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            return {"valid": True, "parsed": schema.parse(content), "retry": None}
        except SchemaMismatch as exc:
            retry = [
                *messages,
                {"role": "assistant", "content": content if isinstance(content, str) else ""},
                {
                    "role": "user",
                    "content": f"That reply does not match the schema ({exc}). "
                    "Reply again with JSON that matches it.",
                },
            ]
            return {"valid": False, "parsed": None, "retry": retry}

    checked = CodeNode(
        name="check",
        code_fn=check,
        inputs={"content": llm["content"], "messages": prompt["messages"]},
        thread=False,
    )
    branch = BranchNode(
        name="valid", cases={"valid": "accept"}, default="again", inputs={"valid": checked["valid"]}
    )
    accept = CodeNode(
        name="accept",
        code_fn=lambda parsed: {"parsed": parsed},
        inputs={"parsed": checked["parsed"]},
        thread=False,
    )
    again = LLMNode(
        name="again",
        resource_key=spec.model,
        batch=spec.batch_api,
        inputs={"messages": checked["retry"]},
        response_format=response,
        **spec.params,
    )

    def recheck(content: Any) -> dict[str, Any]:
        return {"parsed": schema.parse(content)}

    rechecked = CodeNode(
        name="recheck", code_fn=recheck, inputs={"content": again["content"]}, thread=False
    )

    def settle(
        request: dict[str, Any], accepted: Any, retried: Any, **values: Any
    ) -> dict[str, Any]:
        first = {k: values[f"first_{k}"] for k in keys}
        if accepted is not None:
            return finish(request, parsed=accepted, **first)
        second = {k: values[k] for k in keys}
        return finish(request, parsed=retried, **_combined(first, second))

    answer = CodeNode(
        name="answer",
        code_fn=settle,
        inputs=answer_inputs
        | {"accepted": accept["parsed"], "retried": rechecked["parsed"]}
        | {f"first_{k}": llm[k] for k in keys}
        | {k: again[k] for k in keys},
        outputs={"answer": PARENT},
        thread=False,
    )
    START >> prompt >> llm >> checked >> branch >> [accept, again]
    again >> rechecked
    [accept, rechecked] >> ~answer
    answer >> END


def _keys(llm: LLMNode) -> list[str]:
    known = llm.output_keys() or frozenset(ANSWER_KEYS)
    return [key for key in ANSWER_KEYS if key in known]


def _combined(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two calls of one row (an answer asked again) as one: the second's reply, both's
    tokens, cost and time."""
    out = dict(second)
    usage_a, usage_b = first.get("usage") or {}, second.get("usage") or {}
    out["usage"] = {
        k: (usage_a.get(k) or 0) + (usage_b.get(k) or 0)
        for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    for key in ("latency", "queued", "cost"):
        a, b = first.get(key), second.get(key)
        out[key] = None if a is None and b is None else (a or 0) + (b or 0)
    return out


def _result(
    call: Mapping[str, Any],
    share: float,
    text: Any,
    parsed: Mapping[str, Any] | None,
    spec: CallSpec,
) -> dict[str, Any]:
    """A row's result from its call (``share`` of it, for a row of a pack)."""
    usage = call.get("usage") or {}
    cost = call.get("cost")
    result = {
        "answer": text,
        "error": "",
        "latency_s": _seconds(call.get("latency")),
        "queued_s": _seconds(call.get("queued")),
        "model": call.get("model"),
        "prompt_tokens": _part(usage.get("prompt_tokens"), share),
        "completion_tokens": _part(usage.get("completion_tokens"), share),
        "cost_usd": round(cost * share, 8) if isinstance(cost, int | float) else None,
    }
    if spec.schema is not None and parsed is not None:
        result |= spec.schema.cells(parsed)
    return result


def _plus_share(result: Mapping[str, Any], share: Mapping[str, Any]) -> dict[str, Any]:
    """A row asked again alone: its own call plus its share of the pack's call."""
    out = dict(result)
    for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
        own, part = out.get(key), share.get(key)
        if isinstance(own, int | float) and isinstance(part, int | float):
            out[key] = round(own + part, 8) if key == "cost_usd" else own + part
    return out


def _part(tokens: Any, share: float) -> int | None:
    return round(tokens * share) if isinstance(tokens, int) else None


def _seconds(value: Any) -> float | None:
    return round(value, 3) if isinstance(value, int | float) else None


def _error_text(error: Any) -> str:
    return f"{error.type}: {error.message}" if hasattr(error, "type") else str(error)


def _alone_tokens(spec: CallSpec, request: Mapping[str, Any]) -> int:
    """The prompt tokens ``request`` would take asked alone (an estimate)."""
    fields = request["fields"]
    messages = [{"role": "user", "content": spec.user.format(**fields)}]
    if spec.system is not None:
        messages.insert(0, {"role": "system", "content": spec.system.format(**fields)})
    return estimate_prompt_tokens(messages)
