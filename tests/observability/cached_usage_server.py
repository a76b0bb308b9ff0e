"""A loopback chat-completions server whose replies report cached and reasoning tokens.

``MockLLMServer`` reports plain usage only; this one answers every request with a fixed
reply whose usage carries ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``, as OpenAI does for a prompt-cache hit.
"""

from __future__ import annotations

from typing import Any, Self

from aiohttp import web

USAGE: dict[str, Any] = {
    "prompt_tokens": 1_000,
    "completion_tokens": 50,
    "total_tokens": 1_050,
    "prompt_tokens_details": {"cached_tokens": 800},
    "completion_tokens_details": {"reasoning_tokens": 20},
}


class CachedUsageServer:
    """Serves ``POST /v1/chat/completions`` on a free loopback port."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "id": "chatcmpl-cached",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "a cached answer"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            }
        )
