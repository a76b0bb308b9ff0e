"""What every route of the local server does around its own answer.

A server's :class:`Prelude` holds what its routes share: the request records, the
rate limiter, the fault injector, the latency draw and the request numbers.
:meth:`Prelude.route` wraps a route's answer: the request is recorded and its record
ended in one ``finally``, its task is cut off when the server stops, the API key is
checked, a step that refuses the request (:class:`Refused`) becomes its error answer,
and under ``echo_auth`` every error quotes the request's credentials. In between, the
chat, embeddings, rerank and Batch API routes take the same steps: :meth:`~Prelude.json_body`,
:meth:`~Prelude.admit` (rate limits), :meth:`~Prelude.hold` (fault and latency) and
:meth:`~Prelude.answer_fault`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hush.testing.config import MockLLMConfig
from hush.testing.faults import Fault, FaultInjector, Markers
from hush.testing.limits import RateLimiter
from hush.testing.records import Recorder, RequestRecord
from hush.testing.responses import MALFORMED, drop, echo_credentials, error, set_retry_after, stream

Answer = Callable[[web.Request, RequestRecord], Awaitable[web.StreamResponse]]
"""A route's own answer to a request the prelude let through."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HIDDEN_HEADERS = frozenset({"authorization", "api-key"})


class Refused(Exception):
    """Raised by a prelude step: the request is answered with ``response`` instead."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class Prelude:
    """The shared state and steps of one server's routes; ``config`` reads its settings."""

    def __init__(self, config: Callable[[], MockLLMConfig]) -> None:
        self._config = config
        self.recorder = Recorder(config().max_records)
        self.limiter = RateLimiter()
        self.faults = FaultInjector(config().seed)
        self._latency = random.Random(config().seed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._number = 0

    @property
    def config(self) -> MockLLMConfig:
        """The server's settings now."""
        return self._config()

    def reseed(self) -> None:
        """Re-seed the random faults and latencies from ``config.seed``."""
        self.faults.reset(self.config.seed)
        self._latency.seed(self.config.seed)

    def reset(self) -> None:
        """Forget records, counts and rate-limit usage; re-seed."""
        self.recorder.reset(self.config.max_records)
        self.limiter.reset()
        self.reseed()

    def cut_off(self) -> None:
        """Cancel every request being handled (the server stops)."""
        for task in list(self._tasks):
            task.cancel()

    def next_number(self) -> int:
        """A new request number (chat requests and Batch API lines share them)."""
        self._number += 1
        return self._number

    def route(self, answer: Answer, *, keyed: bool = True) -> Handler:
        """``answer`` behind the prelude; ``keyed=False`` serves it without the API key."""

        async def handle(request: web.Request) -> web.StreamResponse:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS}
            record = RequestRecord(request.method, request.path, headers, time.monotonic())
            self.recorder.begin(record)
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                return await self._answer(request, record, answer, keyed)
            finally:
                if task is not None:
                    self._tasks.discard(task)
                self.recorder.end(record, time.monotonic())

        return handle

    async def _answer(
        self, request: web.Request, record: RequestRecord, answer: Answer, keyed: bool
    ) -> web.StreamResponse:
        key = self.config.api_key
        try:
            if (
                keyed
                and key is not None
                and request.headers.get("Authorization") != f"Bearer {key}"
            ):
                raise Refused(error(record, 401, "Incorrect API key provided.", "invalid_api_key"))
            response = await answer(request, record)
        except Refused as refused:
            response = refused.response
        if self.config.echo_auth and response.status >= 400 and isinstance(response, web.Response):
            return echo_credentials(request, response)
        return response

    async def json_body(
        self,
        request: web.Request,
        record: RequestRecord,
        problem_of: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The request's JSON body (kept on ``record``); a 400 when it does not parse or
        ``problem_of`` names a problem with it."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise Refused(
                error(record, 400, "We could not parse the JSON body of your request.")
            ) from None
        record.body = body
        problem = problem_of(body) if problem_of is not None else None
        if problem is not None:
            raise Refused(error(record, 400, problem))
        return body

    def admit(self, record: RequestRecord, tokens: int, headers: dict[str, str]) -> None:
        """Charge the rate limits ``tokens`` (adding their headers), or refuse with a 429."""
        config = self.config
        if config.rpm is None and config.tpm is None:
            return
        decision = self.limiter.check(
            config.rpm, config.tpm, config.burst_seconds, tokens, time.monotonic()
        )
        if config.rate_limit_headers == "always" or (
            config.rate_limit_headers == "on_429" and not decision.allowed
        ):
            headers.update(decision.headers)
        if decision.allowed:
            return
        self.recorder.fault(record, "rate_limited")
        if decision.too_large:
            headers["x-should-retry"] = "false"
        else:
            set_retry_after(headers, decision.retry_after)
        raise Refused(error(record, 429, decision.reason, "rate_limit_exceeded", headers))

    async def hold(self, body: dict[str, Any], markers: Markers | None, text: str) -> Fault | None:
        """Wait the request's latency; the fault it gets (``text`` is what its markers and
        repeat counts are read from)."""
        config = self.config
        fault = self.faults.decide(markers, text, config)
        latency = config.latency
        if isinstance(latency, int | float):
            delay = float(latency)
        elif isinstance(latency, tuple):
            delay = self._latency.uniform(latency[0], latency[1])
        else:
            delay = float(latency(body))
        delay += markers.sleep if markers is not None else 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        return fault

    async def answer_fault(
        self,
        request: web.Request,
        record: RequestRecord,
        fault: Fault,
        headers: dict[str, str],
        markers: Markers | None,
    ) -> web.StreamResponse:
        """Answer with ``fault``; an error status sends the ``[[retry-after:...]]`` marker's
        value (as is) when there is one."""
        config = self.config
        self.recorder.fault(record, str(fault))
        if fault == "hang":
            await asyncio.sleep(config.hang_seconds)
            return drop(request)
        if fault == "drop":
            return drop(request)
        if fault == "malformed":
            record.status = 200
            if isinstance(record.body, dict) and record.body.get("stream"):
                events = [
                    b'data: {"id": "chatcmpl-malformed", "choices": [\n\n',
                    b"data: [DONE]\n\n",
                ]
                return await stream(request, record, events, headers, 0.0)
            return web.Response(body=MALFORMED, content_type="application/json", headers=headers)
        status = int(fault)
        if status in (429, 503):
            set_retry_after(headers, config.fault_retry_after)
        retry_after = markers.retry_after if markers is not None else None
        if retry_after is not None:
            headers.pop("retry-after-ms", None)
            headers["retry-after"] = retry_after
        message = f"Injected fault: HTTP {status} (a [[fail:{status}]] marker or an error rate)."
        return error(record, status, message, None, headers)
