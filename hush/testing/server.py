"""The local OpenAI-compatible HTTP server (aiohttp) used by tests, benchmarks and demos."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from hush.testing.batch_api import BatchAPI
from hush.testing.config import MockLLMConfig
from hush.testing.faults import BROKEN_REPLIES, FLEX_UNAVAILABLE, broken_stream, parse_markers
from hush.testing.prelude import Prelude
from hush.testing.records import RequestRecord
from hush.testing.replies import (
    build_reply,
    choice_count,
    completion_body,
    last_user_text,
    stream_events,
    token_cost,
)
from hush.testing.responses import cut_body, error, stream
from hush.testing.retrieval import add_retrieval_routes

logger = logging.getLogger(__name__)


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
        self.prelude = Prelude(lambda: self.config)
        """What the routes share: records, rate limits, faults, latency (see ``prelude``)."""
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self.batch_api = BatchAPI(self.prelude)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> Self:
        """Bind ``host`` (a free port unless one was given) and start serving."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=64 * 1024 * 1024)
        route = self.prelude.route
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/chat/completions", route(self._chat))
            app.router.add_get(f"{prefix}/models", route(self._models, keyed=False))
            app.router.add_get(f"{prefix}/models/{{model}}", route(self._model, keyed=False))
        add_retrieval_routes(app, self.prelude)
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
        self.prelude.cut_off()
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
            self.prelude.reseed()

    def reset(self) -> None:
        """Forget records, counts, rate-limit usage and fail-N counters; re-seed faults."""
        self.prelude.reset()

    @property
    def requests(self) -> list[RequestRecord]:
        """Received requests, oldest first (at most ``config.max_records``)."""
        return self.prelude.recorder.records()

    @property
    def status_counts(self) -> dict[int, int]:
        """Responses sent, by HTTP status."""
        return self.prelude.recorder.statuses()

    @property
    def fault_counts(self) -> dict[str, int]:
        """Injected faults (``"500"``, ``"hang"``, ``"drop"``, ...) and ``"rate_limited"``, by kind."""
        return self.prelude.recorder.faults()

    @property
    def total_requests(self) -> int:
        """Requests received since the last reset."""
        return self.prelude.recorder.total

    @property
    def in_flight(self) -> int:
        """Requests being handled now."""
        return self.prelude.recorder.in_flight

    @property
    def peak_in_flight(self) -> int:
        """Most requests handled at once since the last reset."""
        return self.prelude.recorder.peak_in_flight

    # -- handlers ----------------------------------------------------------------------

    async def _models(self, request: web.Request, record: RequestRecord) -> web.Response:
        record.status = 200
        data = [_model_entry(name) for name in self.config.models]
        return web.json_response({"object": "list", "data": data})

    async def _model(self, request: web.Request, record: RequestRecord) -> web.Response:
        name = request.match_info["model"]
        if name not in self.config.models:
            return error(record, 404, f"The model '{name}' does not exist", "model_not_found")
        record.status = 200
        return web.json_response(_model_entry(name))

    async def _chat(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        prelude, config = self.prelude, self.config
        body = await prelude.json_body(request, record, _validate)
        messages: list[Any] = body["messages"]
        model: str = body["model"]
        last_user = last_user_text(messages)
        markers = parse_markers(last_user)
        number = prelude.next_number()
        tool = markers.tool if markers is not None else None
        reply = build_reply(body, messages, model, last_user, tool, config.reply_chars, number)
        headers: dict[str, str] = {"x-request-id": f"req_mock{number:08d}"}
        prelude.admit(record, token_cost(body, reply), headers)
        if markers is not None and markers.flex_unavailable and body.get("service_tier") == "flex":
            prelude.recorder.fault(record, "flex_unavailable")
            return error(record, 429, FLEX_UNAVAILABLE, "resource_unavailable", headers)
        fault = await prelude.hold(body, markers, last_user)
        if fault is not None and fault not in BROKEN_REPLIES:
            return await prelude.answer_fault(request, record, fault, headers, markers)
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
                prelude.recorder.fault(record, str(fault))
                events, cut = broken_stream(events, fault)
            return await stream(
                request, record, events, headers, config.stream_chunk_delay, cut=cut
            )
        record.status = 200
        payload = completion_body(reply, model, completion_id, created, n, usage=usage)
        if fault is not None:
            prelude.recorder.fault(record, str(fault))
            return await cut_body(request, payload, headers)
        return web.Response(body=payload, content_type="application/json", headers=headers)


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "You must provide a model parameter."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array of message objects."
    return None


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
