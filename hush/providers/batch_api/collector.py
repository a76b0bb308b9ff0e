"""Collect a resource's batch calls, submit them after a quiet ``batch_window``, route answers.

Every call waits at :func:`batch_complete` while others arrive; once no new call came for the
resource's ``batch_window`` seconds, the waiting requests are written as JSONL lines (one per
distinct request, ``custom_id`` = its digest), split at the provider's caps, uploaded and
submitted; each batch is polled every ``batch_poll_interval`` seconds (growing with its age)
and its output and error lines resolve the calls that asked, by ``custom_id``.

Each submitted batch is recorded in the run's checkpoint before it is polled
(:mod:`~hush.providers.batch_api.records`); a resumed run's call whose ``custom_id`` is
recorded re-attaches to that batch (polls it, keeping all its answers for the calls still
to come) instead of being submitted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import openai
import pydantic

from hush.core.checkpointing import current_store
from hush.providers.batch_api.lines import custom_id, request_line, split
from hush.providers.batch_api.pricing import batch_price
from hush.providers.batch_api.records import SubmittedBatches
from hush.providers.client import LLMResult
from hush.providers.client_scope import scoped_client
from hush.providers.resources import LLMResource, get_registry, normalize_key
from hush.providers.spend import Hold
from hush.providers.spend import current as current_spend
from hush.providers.tokens import estimate_prompt_tokens

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore

logger = logging.getLogger(__name__)

Answer = tuple[str, dict[str, Any]]
"""The id of the batch that answered a call, and the completion body of its line."""
Outcome = Answer | BaseException

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_POLL_INTERVAL = 600.0
"""Longest pause between two polls of one batch, in seconds."""


class BatchCallError(RuntimeError):
    """A call sent through the Batch API failed (its line, or its whole batch).

    Not retried by a node's default retry policy: the batch's own answer is final, and
    ``batch_fallback: sync`` is what sends an unanswered call again."""

    retryable = False


class BatchEndedError(BatchCallError):
    """The call's whole batch failed, expired or was cancelled without answering it."""


class Collector:
    """The waiting batch calls of one resource on one event loop."""

    def __init__(self, key: str, resource: LLMResource) -> None:
        self.key = key
        self.resource = resource
        self.client = openai.AsyncOpenAI(
            base_url=resource.base_url,
            api_key=resource.api_key.get_secret_value() if resource.api_key else "none",
            default_headers={k: v.get_secret_value() for k, v in resource.headers.items()},
            max_retries=6,
        )
        self._pending: dict[str, tuple[Mapping[str, Any], SubmittedBatches | None]] = {}
        """Requests not submitted yet, with the record of the run that asked first."""
        self._records: weakref.WeakKeyDictionary[CheckpointStore, SubmittedBatches] = (
            weakref.WeakKeyDictionary()
        )
        self._attached: set[str] = set()
        """Recorded batches this collector polls for resumed runs."""
        self._kept: dict[str, Outcome] = {}
        """Every answer of an attached batch, for the resumed calls still to come."""
        self._waiting: dict[str, list[asyncio.Future[Answer]]] = {}
        self._arrived = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self.submitted: list[str] = []
        """Ids of the batches submitted, in order."""
        self.last_call_at = 0.0
        """``time.monotonic()`` when the last call arrived."""
        self.submitted_at = 0.0
        """``time.monotonic()`` when the last batch was created."""

    async def aclose(self) -> None:
        """Close the HTTP client (called when the collector's client scope closes)."""
        await self.client.close()

    def _record(self) -> SubmittedBatches | None:
        """The batches recorded in the running run's checkpoint (``None`` without one)."""
        store = current_store.get()
        if store is None:
            return None
        found = self._records.get(store)
        if found is None:
            found = self._records[store] = SubmittedBatches(store, self.key)
        return found

    async def ask(self, body: Mapping[str, Any]) -> Answer:
        """The batch id and completion body answering ``body``, once its batch is done."""
        cid = custom_id(body)
        record = self._record()
        batch_id = None if record is None else record.by_cid.get(cid)
        if batch_id is not None:
            kept = self._kept.get(cid)
            if isinstance(kept, BaseException):
                raise kept
            if kept is not None:
                return kept
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        if cid not in self._waiting:
            if record is not None and batch_id is not None:
                self._attach(batch_id, record.batches[batch_id])
            else:
                self._pending[cid] = (body, record)
        self._waiting.setdefault(cid, []).append(future)
        self.last_call_at = time.monotonic()
        self._arrived.set()
        if self._pending and (self._timer is None or self._timer.done()):
            self._timer = asyncio.create_task(self._quiet_then_submit())
        try:
            return await future
        finally:
            waiting = self._waiting.get(cid, [])
            if future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiting[cid]
                    self._pending.pop(cid, None)

    async def _quiet_then_submit(self) -> None:
        while self._pending:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), self.resource.batch_window)
                continue
            pending, self._pending = self._pending, {}
            task = asyncio.create_task(self._run(pending))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _attach(self, batch_id: str, cids: list[str]) -> None:
        """Poll recorded batch ``batch_id`` (once per collector) and keep all its answers."""
        if batch_id in self._attached:
            return
        self._attached.add(batch_id)
        logger.info("%s: re-attaching to batch %s (%d requests)", self.key, batch_id, len(cids))
        task = asyncio.create_task(self._reattached(batch_id, cids))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _reattached(self, batch_id: str, cids: list[str]) -> None:
        try:
            await self._poll_and_route(batch_id, cids, keep=True)
        except Exception as exc:
            error = BatchCallError(f"{self.key}: batch {batch_id} could not be polled: {exc}")
            self._fail(cids, error, keep=True)

    async def _run(
        self, pending: dict[str, tuple[Mapping[str, Any], SubmittedBatches | None]]
    ) -> None:
        lines = {cid: request_line(cid, body) for cid, (body, _) in pending.items()}
        groups = split(lines)
        records = {cid: record for cid, (_, record) in pending.items()}
        await asyncio.gather(*(self._one_batch(group, records) for group in groups))

    async def _one_batch(
        self, group: dict[str, bytes], records: Mapping[str, SubmittedBatches | None]
    ) -> None:
        cids = list(group)
        try:
            upload = await self.client.files.create(
                file=("hush-batch.jsonl", b"".join(group.values())), purpose="batch"
            )
            batch = await self.client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            self.submitted.append(batch.id)
            self.submitted_at = time.monotonic()
            logger.info("%s: batch %s submitted with %d requests", self.key, batch.id, len(cids))
            by_record: dict[SubmittedBatches, list[str]] = {}
            for cid in cids:
                record = records.get(cid)
                if record is not None:
                    by_record.setdefault(record, []).append(cid)
            for record, recorded in by_record.items():
                await record.add(batch.id, recorded)
            await self._poll_and_route(batch.id, cids)
        except Exception as exc:
            self._fail(cids, BatchCallError(f"{self.key}: batch call failed: {exc}"))

    async def _poll_and_route(self, batch_id: str, cids: list[str], keep: bool = False) -> None:
        started = time.monotonic()
        while True:
            batch = await self.client.batches.retrieve(batch_id)
            counts = batch.request_counts
            logger.info(
                "%s: batch %s %s (%s of %s answered)",
                self.key,
                batch_id,
                batch.status,
                "?" if counts is None else counts.completed + counts.failed,
                len(cids) if counts is None else counts.total,
            )
            if batch.status in TERMINAL:
                break
            if not any(cid in self._waiting for cid in cids):
                logger.info("%s: no call waits for batch %s; polling stops", self.key, batch_id)
                self._attached.discard(batch_id)
                return
            age = time.monotonic() - started
            interval = self.resource.batch_poll_interval
            await asyncio.sleep(min(MAX_POLL_INTERVAL, max(interval, age / 10)))
        if batch.status != "completed":
            error = BatchEndedError(
                f"{self.key}: batch {batch_id} ended '{batch.status}' without answering"
            )
            self._fail(cids, error, keep)
            return
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id is not None:
                content = await self.client.files.content(file_id)
                for raw in content.text.splitlines():
                    if raw.strip():
                        self._route(batch_id, json.loads(raw), keep)
        missing = [
            cid for cid in cids if self._waiting.get(cid) or (keep and cid not in self._kept)
        ]
        no_line = BatchCallError(f"{self.key}: batch {batch_id} returned no line")
        self._fail(missing, no_line, keep)

    def _route(self, batch_id: str, line: dict[str, Any], keep: bool) -> None:
        cid = str(line.get("custom_id"))
        response = line.get("response") or {}
        body = response.get("body") or {}
        outcome: Outcome
        if response.get("status_code") == 200 and line.get("error") is None:
            outcome = (batch_id, body)
        else:
            error = body.get("error") or line.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            status = response.get("status_code")
            outcome = BatchCallError(
                f"{self.key}: batch {batch_id} line failed (HTTP {status}): {message}"
            )
        self._settle(cid, outcome, keep)

    def _settle(self, cid: str, outcome: Outcome, keep: bool) -> None:
        """Resolve the calls waiting for ``cid`` (and keep ``outcome`` for later ones)."""
        if keep:
            self._kept[cid] = outcome
        for future in self._waiting.pop(cid, []):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _fail(self, cids: list[str], error: BatchCallError, keep: bool = False) -> None:
        for cid in cids:
            self._settle(cid, error, keep)


def collector_for(key: str) -> Collector:
    """The collector of resource ``key`` in the current client scope, closed with it."""
    key = normalize_key(key)
    resource = get_registry().get_llm(key)
    return scoped_client(f"batch:{key}", resource, lambda: Collector(key, resource), Collector)


async def batch_complete(
    key: str,
    messages: list[Any],
    params: Mapping[str, Any],
    response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None = None,
    tools: list[Mapping[str, Any]] | None = None,
) -> LLMResult:
    """One chat completion through the Batch API of resource ``key``, at the batch price.

    When its batch ends without answering and the resource has ``batch_fallback: sync``,
    the call is sent synchronously instead (at the synchronous price).
    """
    resource = get_registry().get_llm(key)
    try:
        return await _through_batch(key, resource, messages, params, response_format, tools)
    except BatchEndedError as exc:
        if resource.batch_fallback != "sync":
            raise
        logger.warning("%s; sending the call synchronously (batch_fallback: sync)", exc)
    from hush.providers.clients import complete

    return await complete(
        [key], messages, params=params, response_format=response_format, tools=tools
    )


async def _through_batch(
    key: str,
    resource: LLMResource,
    messages: list[Any],
    params: Mapping[str, Any],
    response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None,
    tools: list[Mapping[str, Any]] | None,
) -> LLMResult:
    body: dict[str, Any] = {"model": resource.model, "messages": messages, **params}
    if tools:
        body["tools"] = tools
    model_type = response_format if isinstance(response_format, type) else None
    if model_type is not None:
        schema = {"name": model_type.__name__, "schema": model_type.model_json_schema()}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(response_format, Mapping):
        body["response_format"] = dict(response_format)
    started = time.monotonic()
    price = batch_price(resource)
    spend = current_spend.get()
    hold: Hold | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    try:
        if spend is not None:
            max_tokens = params.get("max_tokens")
            prompt = estimate_prompt_tokens(messages, tools=tools)
            limit = max_tokens if isinstance(max_tokens, int) else None
            hold = await spend.reserve(normalize_key(key), price, prompt, limit)
        batch_id, answer = await collector_for(key).ask(body)
        raw_usage = answer.get("usage") or {}
        usage = {k: int(v) for k, v in raw_usage.items() if isinstance(v, int)}
        cost = None if price is None else price.usage_cost(usage)
    finally:
        if hold is not None:
            hold.settle(usage, cost)
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content = message.get("content")
    parsed = None
    if model_type is not None and isinstance(content, str):
        parsed = model_type.model_validate_json(content)
    return LLMResult(
        content=content,
        usage=usage,
        model=str(answer.get("model") or resource.model),
        finish_reason=choice.get("finish_reason"),
        tool_calls=message.get("tool_calls"),
        parsed=parsed,
        latency_s=time.monotonic() - started,
        attempts=1,
        resource_key=normalize_key(key),
        cost=cost,
        batch_id=batch_id,
    )
