"""Events as JSON lines: what ASL handlers emit (``ctx.emit``, ``ctx.alert``), the
kernel's alerts, and the running instance's own events (runtime/monitor/runtime_events.py),
in one stream and one schema (runtime/abi/event_schema.py; for machines,
``examples/events.schema.json``).

Every event is one JSON object on one line, its keys always these, in this order:

    {"time": "2024-05-01T12:00:00.123456789Z",   RFC 3339, UTC, nanoseconds
     "time_ns": 1714564800123456789,             the same instant, ns since the Unix epoch
     "host": "router1",                          this host's name
     "interfaces": ["eth0", "eth1"],             the interfaces monitored ([] in a replay)
     "interface": null,                          the one interface the event concerns, else null
     "instance": "edge",                         the instance's name (--name; null in a replay)
     "app": "syn_flood", "kind": "victim",       the app ("xdpmon" for the runtime's own) and kind
     "severity": "info",                         syslog's name of it (critical ... debug)
     "fields": {...}}                            the event's data

Field values are written as JSON has them; bytes as hex text, sets as sorted lists,
anything else JSON has no form for as its ``str()``. Lines are ASCII (JSON escapes).

``EventWriter`` is safe to share between threads: one lock around each event, and
each sink writes a line whole (a file: one ``write(2)``; syslog: one datagram), so
lines of different threads never mix and nothing waits in a buffer when the process
dies. Where the events go (runtime/abi/event_output.py ``Output``, ``open_sink``):
stdout, a file (rotated by size, reopened when moved: event_files.py), or syslog
(syslog.py).

Nothing is lost silently: ``written`` and ``failed`` count the events (``counters()``:
``events.written``, ``events.failed``); the first failure of a run of them is logged
with its reason (``xdpmon.events``), and so is the first success after it, with how
many failed meanwhile. The clock is the wall clock by default; a replay gives the
capture's clock, so its events are the same every time.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from typing import IO, Callable, Iterable

from runtime.abi.event_output import Output, OutputError
from runtime.abi.event_schema import KEYS, SEVERITIES, SEVERITY_CODES

from .event_files import EventFile
from .syslog import SyslogSink

log = logging.getLogger("xdpmon.events")
__all__ = ["KEYS", "EventWriter", "Output", "OutputError", "StreamSink", "open_sink", "rfc3339"]


def rfc3339(ns: int) -> str:
    """``ns`` since the epoch as RFC 3339 UTC with nine decimals."""
    s, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"


def _json_default(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (set, frozenset)):
        try:
            return sorted(v)
        except TypeError:
            return sorted(v, key=str)
    return str(v)


# ---- where events go ----------------------------------------------------------------------------

def open_sink(output: Output, warn: Callable[[str, str | None], None] | None = None):
    """The sink of ``output`` (runtime/abi/event_output.py); OutputError when it cannot
    be opened (a file that cannot be created, no syslog daemon listening)."""
    try:
        if output.kind == "file":
            return EventFile(output.path, output.max_bytes, output.keep, warn=warn)
        if output.kind == "syslog":
            return SyslogSink(output.path, output.facility, output.framing)
    except OSError as e:
        what = f"the file {output.path}" if output.kind == "file" else f"syslog at {output.path}"
        raise OutputError(f"cannot write events to {what}: {e.strerror or e}") from None
    return StreamSink(sys.stdout)


class StreamSink:
    """Events to an open text stream (stdout): written and flushed, a line at a time."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.name = getattr(stream, "name", None) or "a stream"
        if self.name == "<stdout>":
            self.name = "stdout"

    def write(self, line: str, event: dict | None = None) -> None:
        try:
            self.stream.write(line)
            self.stream.flush()
        except ValueError as e:            # closed
            raise OSError(str(e)) from None

    def check(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.stream.flush()            # not closed: stdout is not the writer's
        except (OSError, ValueError):
            pass


# ---- the writer ---------------------------------------------------------------------------------

class EventWriter:
    """Writes events to ``sink`` (StreamSink, event_files.EventFile, syslog.SyslogSink),
    else to the file ``path`` (appended, not rotated), else to the open text stream
    ``stream``, else to stdout. ``keep``: also keep every event written in ``written``,
    as read back from its line (replay --json, the demo)."""

    def __init__(self, path: str | None = None, *, stream: IO[str] | None = None, sink=None,
                 host: str | None = None, interfaces: Iterable[str] = (), instance: str | None = None,
                 clock: Callable[[], int] = time.time_ns, keep: bool = False):
        if sink is None:
            sink = EventFile(path, warn=self._warn) if path is not None \
                else StreamSink(stream if stream is not None else sys.stdout)
        self.sink = sink
        self.host = host if host is not None else socket.gethostname()
        self.interfaces = list(interfaces)
        self.instance = instance
        self.clock = clock
        self.written: list[dict] | None = [] if keep else None
        self.count = 0                   # events written
        self.failed = 0                  # events that could not be written
        self._failing: int | None = None         # failures since the last success (None: none)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def to(cls, output: Output, **kw) -> "EventWriter":
        """A writer to ``output``; OutputError when it cannot be opened."""
        w = cls(stream=sys.stdout, **kw)
        w.sink = open_sink(output, warn=w._warn)
        return w

    def write(self, app: str, kind: str, fields: dict, *, severity: str = "info",
              interface: str | None = None) -> dict:
        """Write one event now; returns it (as built). TypeError for a kind that is not
        a non-empty text, ValueError for a severity not in SEVERITIES. A sink that fails
        counts the event in ``failed`` (the first failure of a run logged, with why)."""
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"an event's kind is a non-empty text, not {kind!r}")
        if severity not in SEVERITY_CODES:
            raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        ns = self.clock()
        event = {"time": rfc3339(ns), "time_ns": ns, "host": self.host, "interfaces": self.interfaces,
                 "interface": interface, "instance": self.instance, "app": app, "kind": kind,
                 "severity": severity, "fields": fields}
        line = json.dumps(event, default=_json_default, separators=(", ", ": ")) + "\n"
        with self._lock:
            try:
                self.sink.write(line, event)
            except OSError as e:
                self._failed(e)
                return event
            self.count += 1
            if self._failing is not None:
                log.warning("events: writing to %s again (%d events could not be written)", self.sink.name,
                            self._failing)
                self._failing = None
            if self.written is not None:
                self.written.append(json.loads(line))
        return event

    def _failed(self, e: OSError) -> None:
        self.failed += 1
        if self._failing is None:
            self._failing = 0
            log.error("events: cannot write to %s: %s; events that cannot be written are counted "
                      "(events.failed), and this is said again only once writing works again",
                      self.sink.name, e.strerror or e)
        self._failing += 1

    def _warn(self, key: str, message: str | None) -> None:
        """A sink's trouble that loses nothing (a file that cannot rotate): said once
        until it is over (``message`` None)."""
        if message is None:
            self._warned.discard(key)
        elif key not in self._warned:
            self._warned.add(key)
            log.warning("events: %s", message)

    def counters(self) -> dict[str, int]:
        """``events.written``, ``events.failed``: next to the program's counters."""
        return {"events.written": self.count, "events.failed": self.failed}

    def stats(self) -> dict:
        """Where events go and how many were written and failed (ctl stats, status)."""
        return {"to": self.sink.name, "written": self.count, "failed": self.failed,
                "rotations": getattr(self.sink, "rotations", 0)}

    # ---- the sink's file ------------------------------------------------------------------------
    def check(self) -> None:
        """A file moved or removed is opened again (every interval of a running instance)."""
        self._reopen(self.sink.check)

    def reopen(self) -> None:
        """Open the file again now (SIGHUP, ctl reload: after logrotate moved it)."""
        self._reopen(self.sink.reopen)

    def _reopen(self, fn) -> None:
        with self._lock:
            try:
                fn()
            except OSError as e:
                self._warn("reopen", f"cannot open {self.sink.name} again: {e.strerror or e}; the next events "
                                     f"try again")
            else:
                self._warn("reopen", None)

    def close(self) -> None:
        with self._lock:
            self.sink.close()
