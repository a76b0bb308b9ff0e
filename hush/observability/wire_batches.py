"""Spans encoded in the tracer's thread as they end, posted in batches by a thread of their own.

For a tracer's private provider whose processors are all hush's, a span goes straight from
its events to OTLP bytes (:func:`~hush.observability.otlp_wire.span_fields`): no
``ReadableSpan``, no processor's ``on_end``, no second encoding pass over its properties.
The bytes wait here; they are handed to the sender thread whenever the tracer's thread has
caught up with the run (one queue operation), at once when a batch is full, and the sender
posts them through the tracer's exporter (:class:`~hush.observability.exporter.OTLPHttpExporter`)
at most ``interval`` seconds after the first arrived, in requests of at most ``batch_size``
spans: the batching of the OpenTelemetry ``BatchSpanProcessor`` it stands in for, with the
same settings. A slow or hanging backend holds the sender thread only; spans beyond
``max_queue`` waiting for it are dropped and counted, as that processor's queue would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hush.background import BackgroundWriter, shutdown
from hush.observability.exporter import OTLPHttpExporter
from hush.observability.otlp_wire import Request

logger = logging.getLogger(__name__)

IDLE_EXIT = 10.0
"""Seconds idle after which the sender thread ends (the next batch starts another)."""


class WireBatches:
    """Encoded spans on their way to ``exporter``, sharing one resource and scope."""

    def __init__(
        self,
        exporter: OTLPHttpExporter,
        resource: Any,
        scope: Any,
        *,
        batch_size: int,
        interval: float,
        max_queue: int,
        name: str,
    ) -> None:
        self.exporter = exporter
        self.batch_size, self.max_queue = max(batch_size, 1), max(max_queue, 1)
        self.interval, self.name = max(interval, 0.0), name
        self._request = Request(resource, scope)
        self._spans: list[bytes] = []
        self._handed = self._taken = 0
        """Spans handed to the sender, and spans it took to post (each counted by one thread:
        what waits for it, ``max_queue`` at most, is the difference)."""
        self.dropped = 0
        """Spans dropped because ``max_queue`` were waiting for the sender."""
        self._said = False
        self.sender = self._new_sender()
        """The thread that posts: it waits ``interval`` after a batch's first spans arrive.
        The tracer closes it (at interpreter exit too), after handing over its last spans."""

    def _new_sender(self) -> BackgroundWriter[list[bytes]]:
        sender: BackgroundWriter[list[bytes]] = BackgroundWriter(
            self._send, name=self.name, linger=self.interval, idle_exit=IDLE_EXIT, on_error="count"
        )
        shutdown.unregister(sender)
        return sender

    def add(self, span: bytes) -> None:
        """Keep an encoded ``Span`` message; a full batch goes to the sender at once."""
        spans = self._spans
        spans.append(self._request.frame(span))
        if len(spans) >= self.batch_size:
            self.hand_over(urgent=True)

    def hand_over(self, *, urgent: bool = False) -> None:
        """Give the spans kept so far to the sender (``urgent``: to post without lingering); as
        many as there is room for under ``max_queue`` waiting, the rest dropped and counted
        (said once per backlog)."""
        spans = self._spans
        if not spans:
            return
        self._spans = []
        waiting = self._handed - self._taken
        if not waiting:
            self._said = False
        room = self.max_queue - waiting
        if room < len(spans):
            self._drop(len(spans) - max(room, 0))
            spans = spans[: max(room, 0)]
        if not spans:
            return
        if not self.sender.offer(spans):
            self._drop(len(spans))
            return
        self._handed += len(spans)
        if urgent:
            self.sender.hurry()

    def flush(self, timeout: float | None = None) -> bool:
        """Post everything kept so far, waiting at most ``timeout`` seconds (by default until
        done: each request is bounded by the exporter's timeout, none is sent while the
        backend is down)."""
        self.hand_over()
        return self.sender.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Post everything kept so far and stop the sender, waiting at most ``timeout`` (by
        default until done, as :meth:`flush`)."""
        self.hand_over()
        return self.sender.close(timeout)

    def after_fork(self) -> None:
        """In a forked child: the parent's spans, kept or handed over, are the parent's to send
        (as OpenTelemetry's processors forget theirs); the child's go through a sender of its
        own."""
        self._spans = []
        self._handed = self._taken = 0
        self.sender = self._new_sender()

    def _drop(self, spans: int) -> None:
        self.dropped += spans
        self.exporter.health.gave_up(spans)
        if not self._said:
            self._said = True
            logger.warning(
                "%d span(s) are waiting for the export to %s already (max_queue_size): later "
                "spans are dropped and counted until it catches up",
                self.max_queue,
                self.exporter.endpoint,
            )

    def _send(self, chunks: Sequence[list[bytes]]) -> None:
        """The sender thread: post ``chunks`` in requests of at most ``batch_size`` spans."""
        spans = [span for chunk in chunks for span in chunk]
        self._taken += len(spans)
        for at in range(0, len(spans), self.batch_size):
            batch = spans[at : at + self.batch_size]
            try:
                self.exporter.send(self._request.of(batch), len(batch))
            except Exception:
                logger.warning("could not send %d span(s); dropped", len(batch), exc_info=True)
                self.exporter.health.gave_up(len(batch))
