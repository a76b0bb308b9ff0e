"""``hush batch`` as a user runs it: a subprocess, real files, the local server over HTTP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook

from hush.testing import MockLLMServer
from tests.hush_process import run_hush

HUSH = [sys.executable, "-m", "hush.cli"]
RESULT_COLUMNS = [
    "answer",
    "error",
    "latency_s",
    "queued_s",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
]

AWKWARD = [
    {"id": "007", "text": 'She said "hi", then left', "lang": "en"},
    {"id": "2", "text": "Dòng một\nDòng hai, có dấu phẩy", "lang": "vi"},
    {"id": "3", "text": "Saya suka nasi goreng; 'pedas', ya?", "lang": "id"},
    {"id": "4", "text": "Tiếng Việt có dấu: ắ ệ ỗ ữ", "lang": "vi"},
    {"id": "5", "text": "tab\there, trailing space ", "lang": ""},
]


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: MockLLMServer) -> Path:
    server.configure(latency=0.0)
    server.reset()
    (tmp_path / "resources.yaml").write_text(
        f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n"
        "  model: gpt-4o-mini\n  max_retries: 1\n  backoff_base: 0.01\n"
    )
    return tmp_path


def env_for(workdir: Path) -> dict[str, str]:
    return {**os.environ, "HUSH_CONFIG": str(workdir / "resources.yaml")}


def hush(
    workdir: Path, *args: str, umask: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hush ARGS``; a batch without ``--model`` uses the configured ``gpt-4o-mini``."""
    if args[0] == "batch" and "--model" not in args:
        args = (*args, "--model", "gpt-4o-mini")
    return run_hush(args, cwd=workdir, env={**env_for(workdir), **(env or {})}, umask=umask)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write an input the way a user's tools would (not with hush's own writer)."""
    columns = list(rows[0])
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".xlsx":
        workbook = Workbook()
        sheet = workbook.active
        sheet.append(columns)
        for row in rows:
            sheet.append([row[c] for c in columns])
        workbook.save(path)
    else:
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )


def read_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    if path.suffix == ".xlsx":
        sheet = load_workbook(path).worksheets[0]
        lines = list(sheet.iter_rows(values_only=True))
        columns = [str(c) for c in lines[0]]
        return columns, [dict(zip(columns, line, strict=True)) for line in lines[1:]]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return list(rows[0]), rows


def asked(server: MockLLMServer) -> Counter[str]:
    """How many times the server was asked each user message."""
    return Counter(r.body["messages"][-1]["content"] for r in server.requests if r.body)
