"""The local OpenAI-compatible HTTP server (aiohttp) used by tests, benchmarks and demos."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from hush.testing.batch_api import BatchAPI
from hush.testing.config import MockLLMConfig
from hush.testing.faults import (
    BROKEN_REPLIES,
    FLEX_UNAVAILABLE,
    Fault,
    FaultInjector,
    Markers,
    broken_stream,
    error_body,
    parse_markers,
)
from hush.testing.limits import RateLimiter
from hush.testing.records import Recorder, RequestRecord
from hush.testing.replies import (
    build_reply,
    choice_count,
    completion_body,
    last_user_text,
    stream_events,
    token_cost,
)
from hush.testing.retrieval import add_retrieval_routes

logger = logging.getLogger(__name__)

_HIDDEN_HEADERS = frozenset({"authorization", "api-key"})
_MALFORMED = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"index": 0, '


class MockLLMServer:
    """A real HTTP server on loopback speaking the OpenAI chat-completions API.

    Use ``async with MockLLMServer(latency=0.01) as server`` (or ``start()``/``stop()``,
    or ``start_in_thread()``/``stop_thread()`` from synchronous code) and point a client
    at :attr:`base_url`. Keyword settings override fields of ``config``.
    """

    def __init__(
        self,
        config: MockLLMConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **settings: Any,
    ) -> None:
        base = config or MockLLMConfig()
        self.config = MockLLMConfig.model_validate({**dict(base), **settings}) if settings else base
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limiter = RateLimiter()
        self._faults = FaultInjector(self.config.seed)
        self._latency_rng = random.Random(self.config.seed)
        self._recorder = Recorder(self.config.max_records)
        self._counter = 0
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self.batch_api = BatchAPI(self)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> Self:
        """Bind ``host`` (a free port unless one was given) and start serving."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/chat/completions", self._chat)
            app.router.add_get(f"{prefix}/models", self._models)
            app.router.add_get(f"{prefix}/models/{{model}}", self._model)
        add_retrieval_routes(app, self)
        self.batch_api.add_routes(app)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=2048)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        logger.debug("mock LLM server listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        """Stop serving; requests still in progress (even hung ones) are cut off."""
        if self._thread_loop is not None and asyncio.get_running_loop() is not self._thread_loop:
            raise RuntimeError("this server runs in its own thread: use stop_thread()")
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()
        logger.debug("mock LLM server on port %s stopped", self._port)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> Self:
        """Serve from a daemon thread running its own event loop (for synchronous callers)."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_loop, args=(loop,), name="hush-mock-llm", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            raise
        self._thread, self._thread_loop = thread, loop
        return self

    def stop_thread(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = self._thread_loop = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()

    # -- settings and records ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("MockLLMServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` without the API prefix."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give an OpenAI client (ends with ``/v1``)."""
        return f"{self.url}/v1"

    def configure(self, **settings: Any) -> None:
        """Change settings while running (validated); a new ``seed`` re-seeds the randomness."""
        for name, value in settings.items():
            setattr(self.config, name, value)
        if "seed" in settings:
            self._faults.reset(self.config.seed)
            self._latency_rng.seed(self.config.seed)

    def reset(self) -> None:
        """Forget records, counts, rate-limit usage and fail-N counters; re-seed faults."""
        self._recorder.reset(self.config.max_records)
        self._limiter.reset()
        self._faults.reset(self.config.seed)
        self._latency_rng.seed(self.config.seed)

    @property
    def requests(self) -> list[RequestRecord]:
        """Received requests, oldest first (at most ``config.max_records``)."""
        return self._recorder.records()

    @property
    def status_counts(self) -> dict[int, int]:
        """Responses sent, by HTTP status."""
        return self._recorder.statuses()

    @property
    def fault_counts(self) -> dict[str, int]:
        """Injected faults (``"500"``, ``"hang"``, ``"drop"``, ...) and ``"rate_limited"``, by kind."""
        return self._recorder.faults()

    @property
    def total_requests(self) -> int:
        """Requests received since the last reset."""
        return self._recorder.total

    @property
    def in_flight(self) -> int:
        """Requests being handled now."""
        return self._recorder.in_flight

    @property
    def peak_in_flight(self) -> int:
        """Most requests handled at once since the last reset."""
        return self._recorder.peak_in_flight

    # -- handlers ----------------------------------------------------------------------

    def _begin(self, request: web.Request) -> RequestRecord:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS}
        record = RequestRecord(request.method, request.path, headers, time.monotonic())
        self._recorder.begin(record)
        return record

    async def _models(self, request: web.Request) -> web.Response:
        record = self._begin(request)
        data = [_model_entry(name) for name in self.config.models]
        record.status = 200
        self._recorder.end(record, time.monotonic())
        return web.json_response({"object": "list", "data": data})

    async def _model(self, request: web.Request) -> web.Response:
        record = self._begin(request)
        name = request.match_info["model"]
        try:
            if name not in self.config.models:
                message = f"The model '{name}' does not exist"
                return _error(record, 404, message, "model_not_found")
            record.status = 200
            return web.json_response(_model_entry(name))
        finally:
            self._recorder.end(record, time.monotonic())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        record = self._begin(request)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._answer(request, record)
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._recorder.end(record, time.monotonic())

    async def _answer(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        response = await self._reply(request, record)
        if self.config.echo_auth and response.status >= 400 and isinstance(response, web.Response):
            return _echo_credentials(request, response)
        return response

    async def _reply(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        config = self.config
        authorization = request.headers.get("Authorization")
        if config.api_key is not None and authorization != f"Bearer {config.api_key}":
            return _error(record, 401, "Incorrect API key provided.", "invalid_api_key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(record, 400, "We could not parse the JSON body of your request.")
        record.body = body
        problem = _validate(body)
        if problem is not None:
            return _error(record, 400, problem)
        messages: list[Any] = body["messages"]
        model: str = body["model"]
        last_user = last_user_text(messages)
        markers = parse_markers(last_user)
        self._counter += 1
        number = self._counter
        tool = markers.tool if markers is not None else None
        reply = build_reply(body, messages, model, last_user, tool, config.reply_chars, number)
        headers: dict[str, str] = {"x-request-id": f"req_mock{number:08d}"}
        if config.rpm is not None or config.tpm is not None:
            cost = token_cost(body, reply)
            decision = self._limiter.check(
                config.rpm, config.tpm, config.burst_seconds, cost, time.monotonic()
            )
            if config.rate_limit_headers == "always" or (
                config.rate_limit_headers == "on_429" and not decision.allowed
            ):
                headers.update(decision.headers)
            if not decision.allowed:
                self._recorder.fault(record, "rate_limited")
                if decision.too_large:
                    headers["x-should-retry"] = "false"
                else:
                    _retry_after(headers, decision.retry_after)
                return _error(record, 429, decision.reason, "rate_limit_exceeded", headers)
        if markers is not None and markers.flex_unavailable and body.get("service_tier") == "flex":
            self._recorder.fault(record, "flex_unavailable")
            return _error(record, 429, FLEX_UNAVAILABLE, "resource_unavailable", headers)
        fault = self._faults.decide(markers, last_user, config)
        delay = self._delay(config, body, markers)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault not in BROKEN_REPLIES:
            retry_after = markers.retry_after if markers is not None else None
            return await self._fault(request, record, fault, headers, config, retry_after)
        created = int(time.time())
        completion_id = f"chatcmpl-mock{number:08d}"
        n = choice_count(body)
        usage = markers is None or markers.usage
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = stream_events(
                reply,
                model,
                completion_id,
                created,
                n,
                include_usage and usage,
                config.stream_chunk_chars,
            )
            cut = False
            if fault is not None:
                self._recorder.fault(record, str(fault))
                events, cut = broken_stream(events, fault)
            return await self._stream(
                request, record, events, headers, config.stream_chunk_delay, cut=cut
            )
        record.status = 200
        payload = completion_body(reply, model, completion_id, created, n, usage=usage)
        if fault is not None:
            self._recorder.fault(record, str(fault))
            return await _cut_body(request, payload, headers)
        return web.Response(body=payload, content_type="application/json", headers=headers)

    def _delay(self, config: MockLLMConfig, body: dict[str, Any], markers: Markers | None) -> float:
        latency = config.latency
        if isinstance(latency, int | float):
            delay = float(latency)
        elif isinstance(latency, tuple):
            delay = self._latency_rng.uniform(latency[0], latency[1])
        else:
            delay = float(latency(body))
        return delay + (markers.sleep if markers is not None else 0.0)

    async def _stream(
        self,
        request: web.Request,
        record: RequestRecord,
        events: list[bytes],
        headers: dict[str, str],
        chunk_delay: float,
        *,
        cut: bool = False,
    ) -> web.StreamResponse:
        """Send ``events``; with ``cut``, close the connection after them without ending."""
        headers["Content-Type"] = "text/event-stream; charset=utf-8"
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        record.status = 200
        await response.prepare(request)
        if chunk_delay > 0:
            for event in events:
                await response.write(event)
                await asyncio.sleep(chunk_delay)
        else:
            await response.write(b"".join(events))
        if cut:
            return _drop(request)
        await response.write_eof()
        return response

    async def _fault(
        self,
        request: web.Request,
        record: RequestRecord,
        fault: Fault,
        headers: dict[str, str],
        config: MockLLMConfig,
        retry_after: str | None = None,
    ) -> web.StreamResponse:
        """Answer with ``fault``; an error status sends ``retry_after`` (as is) when given."""
        self._recorder.fault(record, str(fault))
        if fault == "hang":
            await asyncio.sleep(config.hang_seconds)
            return _drop(request)
        if fault == "drop":
            return _drop(request)
        if fault == "malformed":
            record.status = 200
            if isinstance(record.body, dict) and record.body.get("stream"):
                events = [
                    b'data: {"id": "chatcmpl-malformed", "choices": [\n\n',
                    b"data: [DONE]\n\n",
                ]
                return await self._stream(request, record, events, headers, 0.0)
            return web.Response(body=_MALFORMED, content_type="application/json", headers=headers)
        status = int(fault)
        if status in (429, 503):
            _retry_after(headers, config.fault_retry_after)
        if retry_after is not None:
            headers.pop("retry-after-ms", None)
            headers["retry-after"] = retry_after
        message = f"Injected fault: HTTP {status} (a [[fail:{status}]] marker or an error rate)."
        return _error(record, status, message, None, headers)


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "You must provide a model parameter."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array of message objects."
    return None


def _error(
    record: RequestRecord,
    status: int,
    message: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    record.status = status
    return web.Response(
        status=status,
        body=error_body(status, message, code),
        content_type="application/json",
        headers=headers,
    )


def _echo_credentials(request: web.Request, response: web.Response) -> web.Response:
    """Quote the request's credentials in the error message, as a careless proxy would."""
    quoted = "; ".join(
        f"{name}: {value}"
        for name, value in request.headers.items()
        if name.lower() in ("authorization", "api-key") or name.lower().startswith("x-")
    )
    try:
        body = json.loads(response.body) if isinstance(response.body, bytes) else {}
        body["error"]["message"] += f" (request headers: {quoted})"
        payload = json.dumps(body).encode()
    except (ValueError, KeyError, TypeError):
        payload = f"error; request headers: {quoted}".encode()
    return web.Response(
        status=response.status,
        body=payload,
        content_type="application/json",
        headers={
            k: v
            for k, v in response.headers.items()
            if k.lower() != "content-length" and k.lower() != "content-type"
        },
    )


def _retry_after(headers: dict[str, str], seconds: float) -> None:
    seconds = max(0.001, seconds)
    headers["retry-after"] = f"{seconds:.3f}"
    headers["retry-after-ms"] = str(max(1, int(seconds * 1000 + 0.999)))


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering (the returned response is never sent)."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


async def _cut_body(
    request: web.Request, payload: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Announce ``payload``, send half of it and close the connection."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = "application/json"
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    return _drop(request)


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "hush-mock"}


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8000,
    config: MockLLMConfig | None = None,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C); blocking, for the ``hush mock-llm`` command.

    ``on_ready`` receives the base URL once the port is bound.
    """

    async def main() -> None:
        async with MockLLMServer(config, host=host, port=port) as server:
            logger.info("mock LLM server listening on %s", server.base_url)
            if on_ready is not None:
                on_ready(server.base_url)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
