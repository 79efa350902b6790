"""Application events as JSON lines: what ASL handlers emit (``ctx.emit``).

Every event is one JSON object on one line, its keys always in this order:

    {"time": "2024-05-01T12:00:00.123456789Z",   RFC 3339, UTC, nanoseconds
     "time_ns": 1714564800123456789,             the same instant, ns since the Unix epoch
     "host": "router1",                          this host's name
     "interfaces": ["eth0", "eth1"],             the interfaces monitored ([] in a replay)
     "instance": "edge",                         the instance's name (--name; null in a replay)
     "app": "syn_flood", "kind": "victim",       the app and the kind of event it emitted
     "fields": {...}}                            what the handler gave, as keywords

Field values are written as JSON has them; bytes as hex text, sets as sorted lists,
anything else JSON has no form for as its ``str()``.

``EventWriter`` is safe to share between threads (one lock around each line) and
writes each line whole and flushed, so a reader (``tail -f``, a log shipper)
never sees half an event and nothing waits in a buffer when the process dies. The
clock is the wall clock by default; a replay gives the capture's clock, so its
events are the same every time.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import IO, Callable, Iterable

KEYS = ("time", "time_ns", "host", "interfaces", "instance", "app", "kind", "fields")


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


class EventWriter:
    """Writes events to the file ``path`` (opened for appending, line-buffered,
    closed by ``close()``), else to the open text stream ``stream``, else to
    stdout. ``keep``: also keep every event written in ``written``, as read back
    from its line (replay --json lists them)."""

    def __init__(self, path: str | None = None, *, stream: IO[str] | None = None, host: str | None = None,
                 interfaces: Iterable[str] = (), instance: str | None = None,
                 clock: Callable[[], int] = time.time_ns, keep: bool = False):
        self._owned = path is not None
        self._stream = open(path, "a", buffering=1, encoding="utf-8") if path is not None \
            else stream if stream is not None else sys.stdout
        self.host = host if host is not None else socket.gethostname()
        self.interfaces = list(interfaces)
        self.instance = instance
        self.clock = clock
        self.written: list[dict] | None = [] if keep else None
        self.count = 0
        self._lock = threading.Lock()

    def write(self, app: str, kind: str, fields: dict) -> dict:
        """Write one event now; returns it (as written). TypeError for a kind that
        is not a non-empty text."""
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"an event's kind is a non-empty text, not {kind!r}")
        ns = self.clock()
        event = {"time": rfc3339(ns), "time_ns": ns, "host": self.host, "interfaces": self.interfaces,
                 "instance": self.instance, "app": app, "kind": kind, "fields": fields}
        line = json.dumps(event, default=_json_default, separators=(", ", ": ")) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()
            self.count += 1
            if self.written is not None:
                self.written.append(json.loads(line))
        return event

    def close(self) -> None:
        with self._lock:
            if self._owned:
                self._stream.close()
            else:
                self._stream.flush()
