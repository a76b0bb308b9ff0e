"""Running a coroutine in the current task until it first suspends.

The scheduler's trampoline steps each ready node's coroutine once with
``coro.send(None)``: a node that never suspends is then done, with no task of its
own. One that suspends is finished by awaiting :func:`finish` in the same task,
so what it entered there (a timeout, a cancel scope, the slot) stays with the
task it was entered in, and a cancellation of that task reaches it as usual.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def finish(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Await the rest of ``coro``, which yielded ``yielded`` when it was first stepped.

    What the task sends or throws in (a future's result, a cancellation) goes to ``coro``,
    exactly as if the task had awaited it from the start.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return
