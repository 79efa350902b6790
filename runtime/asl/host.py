"""Hosts the apps' application-specific logic (ASL): loads each app's handler and
routes the decoded events to it, live or in replay, through the same queues.

Each app with rules (or naming an ``asl "file"``) gets its handler
(runtime/asl/handlers.py), made with its context (context.py), a bounded queue
(queues.py; ``queue_size``, or the app's ``options[app]["queue"]``) and a worker
(workers.py). Two ways to run them, the same queues and workers:

- live: ``start_live(maps)`` starts one worker thread per app and the ring
  buffer's consumer thread (consumer.py), which hands every record to its app's
  queue, or drops and counts it when the queue is full. A
  slow or failing handler holds up only its own queue. The consumer only reads
  each record's action and queues its bytes: the app's worker decodes it,
  straight into its typed event (``submit_record``). ``tick()`` queues one
  ``on_tick()`` per app (the run loop never waits for it); ``stop(timeout)``
  stops the consumer, delivers what is queued (within the timeout), calls every
  ``on_stop()`` and joins the workers.
- inline (replay): after ``start()``, ``submit`` queues the event and runs the
  app's worker in the caller's thread, so each event is handled before the next
  frame is run: capture order, deterministic. ``deliver(events)`` submits a
  batch (the replay's ``on_events``); ``tick()`` and ``stop()`` run at once.

``options`` per app (the deployment config's ASL options): ``queue`` (its queue
size), ``enabled`` (false: its handler is not loaded, its events are not
hosted), ``options`` (a mapping handed to the handler as ``ctx.options``).

``stats()`` per app: events received, delivered, queued now, dropped (queue
full: user-space drops), discarded at stop, handler errors, time in the handler,
emitted events, ticks; ``counters()`` the same as flat counters next to the
kernel's (``app.APP.asl_dropped`` beside ``app.APP.ringbuf_full``).
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Callable

from runtime.abi.manifest import Manifest

from .consumer import POLL_TIMEOUT_MS, RingConsumer
from .context import AslContext
from .handlers import AslLoadError, Handler, load_module, resolve_asl
from .queues import QUEUE_SIZE, AppQueue
from .workers import Worker

log = logging.getLogger("xdpmon.asl")

STOP_TIMEOUT_S = 5.0
_ACTION = struct.Struct("<I").unpack_from        # a record's action, at offset 8

__all__ = ["AslHost", "AslLoadError", "resolve_asl", "QUEUE_SIZE"]


class AslHost:
    """The ASL of a program (``manifest``; ``stubs``: the generated stubs,
    {"APP.py": text}, for apps without a handler file). ``controller``: the
    program's runtime.control.controller.Controller; ``events``: where
    ``ctx.emit`` writes (runtime.export.events.EventWriter); ``snapshot(app,
    stats)``: an app's part of a snapshot with those statistics (None: all), on
    the program's clock (an engine's ``app_snapshot``), for summaries and
    ``ctx.stats``; ``records(event)``: told of every alert and enable record
    (runtime/asl/handlers.py). Raises AslLoadError when a handler cannot be loaded or made,
    ValueError for bad options."""

    def __init__(self, manifest: Manifest | dict, stubs: dict[str, str], *, controller=None, events=None,
                 snapshot: Callable[[str, list[str] | None], dict] | None = None,
                 options: dict[str, dict] | None = None, queue_size: int = QUEUE_SIZE,
                 clock: Callable[[], int] | None = None, workers: dict[str, Worker] | None = None,
                 records: Callable[[dict], object] | None = None):
        self.manifest = Manifest.of(manifest)
        self._made = dict(controller=controller, events=events, snapshot=snapshot, options=options,
                          queue_size=queue_size, clock=clock, records=records)
        self.live = False
        self.notes: list[str] = []
        self.workers: dict[str, Worker] = {}
        self.consumer: RingConsumer | None = None
        self.started = False
        options = _check_options(self.manifest, options or {})
        for app in self.manifest.apps:
            opts = options.get(app.name, {})
            if not app.rules and not app.asl or not opts.get("enabled", True):
                continue
            if workers and app.name in workers:       # handed over by the last program's host
                self.workers[app.name] = workers[app.name]
                continue
            path = resolve_asl(app.asl, app.file)
            if app.asl and path is None:
                self.notes.append(f"{app.name}: asl file '{app.asl}' not found; using the generated stub")
            stub = load_module(app.name, None, stubs[f"{app.name}.py"], modname=f"xdpmon_asl_stub_{app.name}")
            mod = load_module(app.name, path, None) if path else stub
            source = str(path) if path else "generated stub"
            ctx = AslContext(self.manifest, app.name, controller=controller, writer=events, snapshot=snapshot,
                             options=opts.get("options"), clock=clock)
            try:
                obj = mod.HANDLER(ctx)
            except Exception as e:
                raise AslLoadError(f"the ASL handler of app '{app.name}' ({source}) could not be made: "
                                   f"{type(e).__name__}: {e}") from e
            handler = Handler(self.manifest, app, mod, obj, source, ctx, snapshot, stub, records)
            self.workers[app.name] = Worker(handler, AppQueue(opts.get("queue", queue_size)))
        self._put = {name: w.queue.put for name, w in self.workers.items()}
        self._put_record = {ev.action: self._put[ev.app] for ev in self.manifest.events.values()
                            if ev.app in self._put}
        self.unhosted = 0                 # records of apps whose handler is not run (options: enabled false)

    # ---- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run inline (replay): every handler's ``on_start()`` now, and each event
        ``submit`` is given is handled before it returns."""
        self.started = True
        for w in self.workers.values():
            w.start(threaded=False)

    def start_live(self, maps, poll_timeout_ms: int = POLL_TIMEOUT_MS) -> None:
        """Run live: a worker thread per app (calling its ``on_start()`` first), and
        the consumer thread taking the records of ``maps`` (a
        runtime.dataplane.maps.MapAccess of the loaded program) as they arrive."""
        self.live = self.started = True
        for w in self.workers.values():
            if w.thread is None:                      # not one handed over, running already
                w.start(threaded=True)
        maps.open_events(self.submit_record, raw=True)
        self.consumer = RingConsumer(maps.poll_events, poll_timeout_ms).start()

    def hand_over(self, manifest, stubs: dict[str, str], keep, old_maps,
                  timeout: float = STOP_TIMEOUT_S) -> "AslHost":
        """The host of the program that replaces this one's (runtime/deploy/swap.py), made
        once the old program runs nowhere: the old ring buffer is drained into the queues,
        the workers of the apps in ``keep`` (handler objects, queues, threads) move to the
        new host, the others get ``on_stop()`` after their queued events. The caller then
        calls ``start_live`` on the new host with the new program's maps."""
        if self.consumer is not None:
            self.consumer.stop(timeout)
            self.consumer = None
        old_maps.poll_events()                        # what the old program wrote last
        kept = {n: w for n, w in self.workers.items() if n in keep}
        deadline = time.monotonic() + timeout
        for name, w in self.workers.items():
            if name not in kept and not w.stopped:
                w.stop(deadline)
        for name, w in self.workers.items():
            if name not in kept and w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
        new = AslHost(manifest, stubs, workers=kept, **self._made)
        new.unhosted = self.unhosted
        return new

    def submit(self, event: dict) -> None:
        """One decoded event (runtime.abi.records.EventDecoder) for its app's handler."""
        put = self._put.get(event["app"])
        if put is None:
            return
        put(event)
        if not self.live and self.started:
            self.workers[event["app"]].run_pending()

    def submit_record(self, data: bytes) -> None:
        """One ring buffer record, undecoded, for its app's queue (live: the consumer
        thread's only work per record; the app's worker decodes it)."""
        put = self._put_record.get(_ACTION(data, 8)[0])
        if put is None:
            self.unhosted += 1
        else:
            put(data)

    def deliver(self, events: list[dict]) -> None:
        for ev in events:
            self.submit(ev)

    def tick(self) -> None:
        """One ``on_tick()`` for every handler (live: queued, never waited for)."""
        for w in self.workers.values():
            w.tick()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> dict[str, bool]:
        """Stop the consumer, deliver what is queued, call each ``on_stop()`` and join
        the workers, within ``timeout`` s in all; per app, whether it stopped (a
        handler stuck in a call does not: it is named in a warning and left
        behind, its thread a daemon)."""
        deadline = time.monotonic() + timeout
        if self.consumer is not None:
            if not self.consumer.stop(timeout):
                log.warning("the ring buffer consumer did not stop within %.1f s", timeout)
        if not self.started:
            return {name: True for name in self.workers}
        for w in self.workers.values():
            if not w.stopped:
                w.stop(deadline)
        out = {}
        for name, w in self.workers.items():
            if w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
            out[name] = w.stopped
            if not w.stopped:
                log.warning("asl %s did not stop within %.1f s (busy in a handler call; %d events queued)",
                            name, timeout, len(w.queue))
            elif w.discarded:
                log.warning("asl %s: %d queued events were not delivered: stop's %.1f s ran out",
                            name, w.discarded, timeout)
        return out

    # ---- what it did -----------------------------------------------------------------------
    def stats(self) -> dict[str, dict]:
        out = {}
        for name, w in self.workers.items():
            h, q = w.handler, w.queue
            out[name] = {"source": h.source, "received": q.received, "delivered": h.stats.delivered,
                         "queued": len(q), "dropped": q.dropped, "discarded": w.discarded,
                         "errors": h.stats.errors, "handler_ns": h.stats.handler_ns, "emitted": h.ctx.emitted,
                         "ticks": h.stats.ticks, "ticks_skipped": w.ticks_skipped}
        return out

    def counters(self) -> dict[str, int]:
        """``app.APP.asl_NAME`` for the counts of ``stats()`` (and the consumer's errors)."""
        out = {}
        for name, st in self.stats().items():
            for k in ("received", "delivered", "queued", "dropped", "discarded", "errors", "emitted"):
                out[f"app.{name}.asl_{k}"] = st[k]
        if self.consumer is not None:
            out["asl.consumer_errors"] = self.consumer.errors
        return out


OPTION_KEYS = ("queue", "enabled", "options")


def _check_options(man: Manifest, options: dict) -> dict:
    names = [a.name for a in man.apps]
    for app, opts in options.items():
        if app not in names:
            raise ValueError(f"ASL options for '{app}': no such app (apps: {', '.join(names)})")
        unknown = sorted(set(opts) - set(OPTION_KEYS))
        if unknown:
            raise ValueError(f"ASL options of '{app}': unknown {', '.join(unknown)} (known: {', '.join(OPTION_KEYS)})")
    return options
