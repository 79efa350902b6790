"""The bounded queue of one app's events, between the ring buffer's consumer and
the app's worker.

``put(event)`` never blocks: when ``maxsize`` events wait, the event is dropped
and counted (``dropped``: the app's user-space drops, shown next to the kernel's
ring-buffer drops, counter ``app.APP.ringbuf_full``). Events have one producer
(the consumer thread, or the replay), so ``received`` and ``dropped`` are exact.

Control items (a tick, start, stop) go to a queue of their own (``put_control``):
never dropped and not counted against the bound, and taken before the next event,
so a flood of events delays an app's ``on_tick`` by one handler call at most.

The worker waits on ``ready`` when both are empty; a producer sets it after
adding an item when it is not set (one attribute test per event while the worker
is busy).
"""

from __future__ import annotations

import threading
from collections import deque

QUEUE_SIZE = 10_000          # events waiting for an app's handler, at most (default)


class AppQueue:
    def __init__(self, maxsize: int = QUEUE_SIZE):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"an app's queue holds at least one event (queue size {maxsize!r})")
        self.maxsize = maxsize
        self.events: deque = deque()
        self.control: deque = deque()
        self.ready = threading.Event()
        self.received = 0            # events offered
        self.dropped = 0             # of them, dropped: the queue was full

    def put(self, event) -> bool:
        """Queue an event; False (and counted) when the queue is full."""
        self.received += 1
        q = self.events
        if len(q) >= self.maxsize:
            self.dropped += 1
            return False
        q.append(event)
        if not self.ready.is_set():
            self.ready.set()
        return True

    def put_control(self, item) -> None:
        self.control.append(item)
        self.ready.set()

    def __len__(self) -> int:
        return len(self.events)
