"""A key never shows in any form: stripped on load, redacted raw, escaped, quoted, URL-encoded
and in base64, in errors, ``$state``, traces, every log record and the ``hush batch`` output.
Real HTTP to the local server that echoes the request's credentials."""

from __future__ import annotations

import base64
import csv
import json
import logging
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.redaction import MASK, redact, register_secret
from hush.observability import LocalTracer
from hush.providers import LLMNode, get_registry
from hush.testing import MockLLMServer

KEY = "sk-test-Paste/Err+or=Key-9f3a71"
"""A key with characters that URL-encoding and base64 change."""
HEADER_KEY = "hdr-Secret-5b2e-7c19"
HUSH_BATCH = [sys.executable, "-m", "hush.cli", "--debug", "batch"]


def lower_hex(text: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def forms(secret: str) -> dict[str, str]:
    """The ways a message can carry ``secret`` (written independently of hush's redaction)."""
    out = {
        "raw": secret,
        "start": secret[:12],
        "repr": repr(secret + "\n")[1:-3],
        "bytes repr": repr(f"Bearer {secret}\n".encode())[2:-3],
        "json": json.dumps(secret)[1:-1],
        "url": urllib.parse.quote(secret, safe=""),
        "url lower-case hex": lower_hex(urllib.parse.quote(secret, safe="")),
        "url plus": urllib.parse.quote_plus(secret),
    }
    raw = secret.encode()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        core = encoded[-(-8 * offset // 6) : 8 * (offset + len(raw)) // 6]
        out[f"base64 at {offset}"] = core
        out[f"urlsafe base64 at {offset}"] = core.replace("+", "-").replace("/", "_")
    return out


def leaks(text: str, *secrets: str) -> list[str]:
    """The forms of ``secrets`` found in ``text``."""
    found = []
    for secret in secrets:
        for name, form in forms(secret).items():
            if form in text:
                found.append(f"{name} of {secret[:6]}…")
    return found


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    register_secret(KEY, what="test key")
    register_secret(HEADER_KEY, what="test header")


@pytest.mark.parametrize(
    "carrier",
    [
        lambda s: "Illegal header value " + repr(("Bearer " + s + "\n").encode()),
        lambda s: repr({"Authorization": f"Bearer {s}\n"}),
        lambda s: json.dumps({"error": {"message": f"bad key {s!r}"}}),
        lambda s: json.dumps(json.dumps(f"Bearer {s}")),
        lambda s: "GET /v1/models?key=" + urllib.parse.quote(s, safe=""),
        lambda s: "GET /v1/models?key=" + lower_hex(urllib.parse.quote(s, safe="")),
        lambda s: urllib.parse.urlencode({"api_key": s}),
        lambda s: "Authorization: Basic " + base64.b64encode(f"pk-lf-1:{s}".encode()).decode(),
        lambda s: "token=" + base64.b64encode(f"ab{s}".encode()).decode(),
        lambda s: base64.urlsafe_b64encode(f"x{s}".encode()).decode(),
        lambda s: "upstream said: Bearer " + s[:20],
        lambda s: "upstream said: Bearer " + s[:17] + "…",
    ],
    ids=[
        "httpx header error",
        "repr of headers",
        "json quoting a repr",
        "json in json",
        "url-encoded",
        "url-encoded lower-case hex",
        "urlencode",
        "basic auth",
        "base64 offset 2",
        "urlsafe base64 offset 1",
        "cut off at the end",
        "cut off before an ellipsis",
    ],
)
def test_every_form_of_a_secret_is_redacted(carrier: object) -> None:
    assert callable(carrier)
    for secret in (KEY, HEADER_KEY):
        text = carrier(secret)
        assert leaks(text, secret), "the carrier must hold the secret before redaction"
        clean = redact(text)
        assert not leaks(clean, secret), clean
        assert MASK in clean


def test_ordinary_text_is_left_alone() -> None:
    text = "HTTP 400: the prompt is too long (4097 tokens) for model gpt-4o-mini"
    assert redact(text) == text


async def test_the_real_illegal_header_error_of_a_key_with_a_newline_is_redacted() -> None:
    pasted = "sk-test-Unstripped/Key+77\n"
    register_secret(pasted, what="unstripped test key")
    async with MockLLMServer() as server:
        client = openai.AsyncOpenAI(api_key=pasted, base_url=server.base_url, max_retries=0)
        with pytest.raises(openai.APIConnectionError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        await client.close()
    cause = str(caught.value.__cause__)
    assert "Illegal header value" in cause and leaks(cause, pasted.strip())
    assert not leaks(redact(cause), pasted.strip())


def test_every_record_of_a_hush_logger_is_redacted_for_every_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    child = logging.getLogger("hush.providers.some.deep.child")
    handler = Keep()
    child.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        child.debug("sending with %r", {"Authorization": f"Bearer {KEY}\n"})
        try:
            raise ValueError(f"server echoed {base64.b64encode(KEY.encode()).decode()}")
        except ValueError:
            child.exception("failed")
        logging.getLogger("openai._base_client").debug("headers: %s", urllib.parse.quote(KEY))
    finally:
        child.removeHandler(handler)
    assert len(seen) == 2
    for text in [*seen, caplog.text]:
        assert not leaks(text, KEY), text
    assert "ValueError: server echoed" in caplog.text


def run_graph(resource: str) -> GraphNode:
    with GraphNode(name="g") as graph:
        with MapNode(name="m", inputs={"q": Each(PARENT["qs"])}, max_concurrency=3) as items:
            llm = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
            )
            llm["content"] >> PARENT["answer"]
            START >> llm >> END
        items["answer"] >> PARENT["answers"]
        items["error"] >> PARENT["errors"]
        START >> items >> END
    return graph


@pytest.fixture
def pasted() -> Iterator[str]:
    """``llm:pasted`` against an echoing server, its key and header pasted with a newline."""
    with MockLLMServer(echo_auth=True) as server:
        get_registry().register(
            "llm:pasted",
            {
                "base_url": server.base_url,
                "model": "gpt-4o-mini",
                "api_key": f"{KEY}\n",
                "headers": {"X-Api-Key": f"  {HEADER_KEY}\r\n"},
                "max_retries": 1,
                "backoff_base": 0.01,
            },
        )
        yield "pasted"
        get_registry().unregister("llm:pasted")


async def test_a_key_pasted_with_a_newline_works_warns_once_and_never_shows(
    pasted: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    trace = tmp_path / "trace.jsonl"
    result = await Hush(run_graph(pasted)).run(
        {"qs": ["fine", "bad [[fail:400]]", "flaky [[fail-once:500]]", "gone [[fail:401]]"]},
        tracer=LocalTracer(trace),
    )

    assert result["errors"][0] is None and result["errors"][2] is None
    assert result["answers"][0] == "[gpt-4o-mini] reply to: fine"
    echoed = result["errors"][1].message
    assert "Authorization: Bearer ***" in echoed and "x-api-key: ***" in echoed.lower()
    texts = {
        "result": repr(result),
        "$state": json.dumps(result["$state"].to_dict(), default=str),
        "tracebacks": "".join(e.traceback for e in result["errors"] if e is not None),
        "trace": trace.read_text(),
        "logs": caplog.text,
        "setup logs": "\n".join(r.getMessage() for r in caplog.get_records("setup")),
    }
    for where, text in texts.items():
        assert not leaks(text, KEY, HEADER_KEY), where
    stripped = [
        r.getMessage()
        for r in [*caplog.get_records("setup"), *caplog.records]
        if r.name == "hush.providers.resources" and "llm:pasted" in r.getMessage()
    ]
    assert len(stripped) == 2, stripped
    assert any("api_key" in line for line in stripped)


def test_hush_batch_with_a_pasted_key_keeps_it_out_of_the_output_and_logs(
    tmp_path: Path,
) -> None:
    with MockLLMServer(echo_auth=True) as server:
        (tmp_path / "resources.yaml").write_text(
            "llm:pasted-batch:\n"
            f"  base_url: {server.base_url}\n"
            "  model: gpt-4o-mini\n"
            f'  api_key: "{KEY}\\n"\n'
            "  max_retries: 1\n"
            "  backoff_base: 0.01\n"
        )
        with (tmp_path / "rows.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerows([["text"], ["fine"], ["bad [[fail:400]]"], ["gone [[fail:403]]"]])
        out = subprocess.run(
            [
                *HUSH_BATCH,
                "rows.csv",
                "-o",
                "out.csv",
                "--prompt",
                "{text}",
                "--model",
                "pasted-batch",
                "--trace",
                "trace.jsonl",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "HUSH_CONFIG": str(tmp_path / "resources.yaml")},
        )
    assert out.returncode == 1, out.stderr
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["answer"] == "[gpt-4o-mini] reply to: fine"
    assert "Authorization: Bearer ***" in rows[1]["error"]
    assert out.stderr.count("has spaces or a line break around it") == 1
    written = {
        path.name: path.read_bytes().decode("utf-8", "replace")
        for path in tmp_path.iterdir()
        if path.is_file() and path.name != "resources.yaml"
    }
    assert "out.csv" in written and "trace.jsonl" in written
    for where, text in {**written, "stdout": out.stdout, "stderr": out.stderr}.items():
        assert not leaks(text, KEY), where
