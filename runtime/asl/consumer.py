"""The ring buffer's consumer: a thread of its own that waits for records and
hands each one on as it arrives.

``RingConsumer(poll)`` calls ``poll(timeout_ms)`` in a loop: for a live program
``ProgramMaps.poll_events`` (BCC's ``ring_buffer_poll``: epoll on every app's
ring, the GIL released while it waits, each record decoded and handed to the
sink the maps were opened with, the ASL host's ``submit``). Nothing else runs in
this thread, so reading maps, the run loop and the handlers never wait for it,
and it never waits for them: ``submit`` only queues (or drops and counts).

``stop(timeout)`` ends the loop after the current poll (at most ``timeout_ms``),
takes once more what the rings hold, and joins the thread. An exception from a
poll (a record that cannot be decoded) is logged with its traceback and counted
in ``errors``; the consumer goes on.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("xdpmon.asl")

POLL_TIMEOUT_MS = 100


class RingConsumer:
    def __init__(self, poll: Callable[[int], object], timeout_ms: int = POLL_TIMEOUT_MS):
        self.poll = poll
        self.timeout_ms = timeout_ms
        self.errors = 0
        self.polls = 0
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="asl-ring-consumer", daemon=True)

    def start(self) -> "RingConsumer":
        self.thread.start()
        return self

    def _poll(self, timeout_ms: int) -> None:
        try:
            self.poll(timeout_ms)
            self.polls += 1
        except Exception as e:
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.error("ring buffer consumer: %s: %s (%d errors so far)", type(e).__name__, e, self.errors,
                          exc_info=(type(e), e, e.__traceback__))
            self._stopping.wait(0.01)       # no busy loop on a persistent failure

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._poll(self.timeout_ms)
        self._poll(0)                       # what arrived during the last poll

    def stop(self, timeout: float | None = None) -> bool:
        """Stop and join; False when the thread had not ended within ``timeout`` s."""
        self._stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()
