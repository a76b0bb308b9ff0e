"""The README's quick start runs as written (against the local server, via resources.yaml)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hush.testing import MockLLMServer

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    quick_start = blocks[0]
    assert len([line for line in quick_start.splitlines() if line.strip()]) <= 15
    (tmp_path / "quick_start.py").write_text(quick_start)
    with MockLLMServer() as server:
        (tmp_path / "resources.yaml").write_text(
            f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n  api_key: local\n  model: gpt-4o-mini\n  rpm: 60000\n"
        )
        out = subprocess.run(
            [sys.executable, "quick_start.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reply to: What is 2+2?" in out.stdout
    assert out.stdout.strip().endswith("ok")
