"""The worker of one app: takes its queue's items and calls its handler.

``run_pending()`` does the work: control items first (start, tick, stop), then
events (decoded event dicts, or live the ring buffer's records as bytes,
decoded here, in the app's thread), until both queues are empty. Live, a thread of the app's own runs it
whenever the queue's ``ready`` is set, so a slow handler holds up only its own
queue. In replay the host calls ``run_pending()`` inline after queueing each
event, so handlers see events in capture order, between the frames, every time
the same: one code path, two drivers.

``stop`` (a control item with a deadline): the events already queued are
delivered until the deadline (those left then are counted as ``discarded``),
``on_stop()`` is called, and the worker ends.
"""

from __future__ import annotations

import threading
import time

from .handlers import Handler
from .queues import AppQueue

START, TICK = "start", "tick"


class _Stop:
    def __init__(self, deadline: float):
        self.deadline = deadline            # time.monotonic()


class Worker:
    def __init__(self, handler: Handler, queue: AppQueue):
        self.handler = handler
        self.queue = queue
        self.thread: threading.Thread | None = None
        self.stopped = False                # on_stop() was called
        self.discarded = 0                  # events left queued when stop's time ran out
        self.tick_pending = False
        self.ticks_skipped = 0              # ticks that came while one still waited

    # ---- what the drivers call --------------------------------------------------------------
    def start(self, threaded: bool) -> None:
        self.queue.put_control(START)
        if threaded:
            self.thread = threading.Thread(target=self._run, name=f"asl-{self.handler.name}", daemon=True)
            self.thread.start()
        else:
            self.run_pending()

    def tick(self) -> None:
        """Queue one on_tick(); while one waits, a new one is skipped (and counted)."""
        if self.tick_pending:
            self.ticks_skipped += 1
            return
        self.tick_pending = True
        self.queue.put_control(TICK)
        if self.thread is None:
            self.run_pending()

    def stop(self, deadline: float) -> None:
        self.queue.put_control(_Stop(deadline))
        if self.thread is None:
            self.run_pending()

    # ---- the work ---------------------------------------------------------------------------------
    def run_pending(self) -> bool:
        """Handle every waiting item; False once stopped."""
        if self.stopped:
            return False
        q, h = self.queue, self.handler
        events, control, event, record = q.events, q.control, h.event, h.record
        while True:
            if control:
                item = control.popleft()
                if item is TICK:
                    self.tick_pending = False
                    h.call("on_tick")
                elif item is START:
                    h.call("on_start")
                else:
                    self._drain(item.deadline)
                    h.call("on_stop")
                    self.stopped = True
                    return False
                continue
            try:
                ev = events.popleft()
            except IndexError:
                return True
            if type(ev) is bytes:          # live: a ring buffer record, decoded here
                record(ev)
            else:
                event(ev)

    def _drain(self, deadline: float) -> None:
        events, h, now = self.queue.events, self.handler, time.monotonic
        while events:
            if now() > deadline:
                self.discarded += len(events)
                events.clear()
                return
            ev = events.popleft()
            h.record(ev) if type(ev) is bytes else h.event(ev)

    def _run(self) -> None:
        q = self.queue
        ready = q.ready
        while self.run_pending():
            ready.clear()
            if q.events or q.control:
                continue
            ready.wait()
