"""``hush batch`` starts importing the OpenAI SDK in the background before it reads its input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.batch.conftest import env_for, write_rows

PROBE = """
import sys

source = sys.argv[1]
told = []


def watch(event, args):
    if event == "open" and args and str(args[0]) == source and not told:
        preload = sys.modules.get("hush.providers.preload")
        thread = preload.started() if preload is not None else None
        told.append(thread.name if thread is not None else "none")
        print("preload thread when the input was opened:", told[0], flush=True)


sys.addaudithook(watch)
sys.argv = ["hush", "batch", *sys.argv[1:]]
from hush.cli import main

main()
"""


def test_batch_starts_the_sdk_import_before_reading_its_input(workdir: Path) -> None:
    source = workdir / "rows.csv"
    write_rows(source, [{"id": "1", "text": "hello"}])
    done = subprocess.run(
        [
            *(sys.executable, "-c", PROBE, str(source), "-o", str(workdir / "out.csv")),
            *("--prompt", "Say {text}", "--model", "gpt-4o-mini", "--no-progress"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
        env=env_for(workdir),
    )
    assert done.returncode == 0, done.stderr
    assert "preload thread when the input was opened: hush-preload" in done.stdout


def test_preload_imports_every_module_it_names_in_its_own_thread() -> None:
    probe = (
        "import sys, threading\n"
        "from hush.providers.preload import MODULES, start\n"
        "seen = {}\n"
        "sys.addaudithook(lambda e, a: seen.setdefault(a[0], threading.current_thread().name)"
        " if e == 'import' else None)\n"
        "start().join()\n"
        "print(' '.join(m for m in MODULES if m not in sys.modules))\n"
        "print(seen.get('openai.types'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    missing, importer = done.stdout.splitlines()
    assert missing == ""
    assert importer == "hush-preload"
