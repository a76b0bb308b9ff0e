"""Child process for the SIGKILL test: saves entries forever, printing what is durable.

Each line printed is a count ``n``: the entries ``root/batch[0]`` to
``root/batch[n-1]`` are all committed (a ``await save()`` confirmed the last
one, and commits follow the order of saves).
"""

from __future__ import annotations

import asyncio
import sys

from hush.checkpoint import open_checkpoint


def value(index: int) -> dict[str, object]:
    """The value saved for item ``index``."""
    return {"index": index, "content": f"answer {index} " * 8, "usage": [index, 2 * index]}


async def main(path: str, run_id: str) -> None:
    store = await open_checkpoint(path, run_id, "kill-test")
    count = 0
    while True:
        for _ in range(9):
            store.save(f"root/batch[{count}]", "d", value(count))
            count += 1
        await store.save(f"root/batch[{count}]", "d", value(count))
        count += 1
        sys.stdout.write(f"{count}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
