"""Batch input lines: ``custom_id`` digests and splitting at the provider's caps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000
"""Most requests in one batch (OpenAI)."""
MAX_BYTES = 200 * 1024 * 1024
"""Largest batch input file (OpenAI)."""


def custom_id(body: Mapping[str, Any]) -> str:
    """The digest of a request body: equal requests share it, whatever their order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "hush-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def request_line(cid: str, body: Mapping[str, Any]) -> bytes:
    """One JSONL line of a batch input file."""
    line = {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False).encode() + b"\n"


def split(
    lines: Mapping[str, bytes], max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[dict[str, bytes]]:
    """Group lines into files of at most ``max_requests`` lines and ``max_bytes`` bytes."""
    groups: list[dict[str, bytes]] = []
    current: dict[str, bytes] = {}
    size = 0
    for cid, line in lines.items():
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            groups.append(current)
            current, size = {}, 0
        current[cid] = line
        size += len(line)
    if current:
        groups.append(current)
    return groups
