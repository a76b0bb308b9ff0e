"""A local OpenAI-compatible server for tests, benchmarks, examples and demos.

```python
from hush.testing import MockLLMServer

async with MockLLMServer(latency=0.01, rpm=600) as server:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
```

Markers in the last user message target one request: ``[[fail:500]]`` (any 400-599),
``[[hang]]``, ``[[drop]]``, ``[[malformed]]``, ``[[fail-once:500]]``,
``[[fail-times:N:503]]`` (also ``hang``/``drop``/``malformed``), ``[[sleep:0.5]]`` and
``[[tool:NAME]]`` (with ``tools`` in the request).

It also serves ``/v1/embeddings`` and ``/rerank`` (``/v1/rerank``, ``/v2/rerank``) with
deterministic answers (see :mod:`hush.testing.retrieval`).
"""

from hush.testing.config import MockLLMConfig
from hush.testing.records import RequestRecord
from hush.testing.server import MockLLMServer, serve_forever

__all__ = ["MockLLMConfig", "MockLLMServer", "RequestRecord", "serve_forever"]
