"""The engine protocol: what every engine (kernel replay, reference, live) offers.

An engine is made from compiled artifacts (``compiler.driver.Artifacts``) and:

- ``run_frame(ts_ns, data)``: feeds one frame on the clock ``ts_ns``; returns
  the XDP verdict, or None when the frame was refused (counted in ``stats``);
- ``maps``: a runtime.dataplane.maps.MapAccess (``set_param``, ``set_enabled``,
  ``params()``, ``ctl()``, ``counters()``, ``raw_state()``);
- ``poll_events()``: takes the records waiting in the program's ring buffer; each
  is decoded and put in ``events``, an ``EventQueue``. ``run_frame`` polls
  every ``poll_every`` frames (default: after every frame, so events are
  delivered as they occur, in capture order);
- ``snapshot(now=None)``: polls, then decodes every map on the clock ``now``
  (default: the latest frame's time); its ``events`` are those waiting in the
  queue, not taken by it;
- ``stats`` (frames, refused, verdicts, last_ts), ``close()``, and ``with``.

Subclasses implement ``_run(ts_ns, data)`` (the verdict, or None when refused)
and pass their ``maps`` to ``Engine.__init__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, deque
from dataclasses import dataclass, field

from runtime.abi.manifest import Manifest
from runtime.abi.snapshot import build_snapshot
from runtime.dataplane.maps import MapAccess

QUEUE_SIZE = 1 << 16             # events waiting for their consumer, at most


@dataclass
class ReplayStats:
    frames: int = 0
    refused: int = 0
    verdicts: dict = field(default_factory=dict)
    last_ts: int = 0


class EventQueue:
    """Decoded events on their way from an engine to their consumer: a bounded
    FIFO. ``put`` never blocks: when ``maxsize`` events are waiting, the new one
    is dropped and counted in ``dropped`` (and per app in ``dropped_by_app``),
    as a full ring buffer drops the records it has no room for."""

    def __init__(self, maxsize: int = QUEUE_SIZE):
        if maxsize < 1:
            raise ValueError("an event queue holds at least one event")
        self.maxsize = maxsize
        self._q: deque[dict] = deque()
        self.dropped = 0
        self.dropped_by_app: Counter[str] = Counter()

    def put(self, event: dict) -> bool:
        if len(self._q) >= self.maxsize:
            self.dropped += 1
            self.dropped_by_app[event["app"]] += 1
            return False
        self._q.append(event)
        return True

    def take(self) -> list[dict]:
        """Every waiting event, oldest first; the queue is then empty."""
        q = self._q
        return [q.popleft() for _ in range(len(q))]

    def waiting(self) -> list[dict]:
        """The waiting events, left in the queue."""
        return list(self._q)

    def __len__(self) -> int:
        return len(self._q)


class Engine(ABC):
    """The protocol, with what every engine shares (see the module docstring)."""

    name: str = ""

    def __init__(self, manifest: Manifest | dict, maps: MapAccess, *, poll_every: int = 1,
                 queue_size: int = QUEUE_SIZE):
        if poll_every < 1:
            raise ValueError("poll_every is a number of frames, at least 1")
        self.manifest = Manifest.of(manifest)
        self.maps = maps
        self.poll_every = poll_every
        self.stats = ReplayStats()
        self.events = EventQueue(queue_size)
        maps.init()
        maps.open_events(self.events.put)

    @abstractmethod
    def _run(self, ts_ns: int, data: bytes) -> int | None:
        """Run one frame: its verdict, or None when the engine refuses it."""

    def run_frame(self, ts_ns: int, data: bytes) -> int | None:
        """Run one frame; returns the XDP verdict, or None when refused."""
        st = self.stats
        st.frames += 1
        if ts_ns > st.last_ts:
            st.last_ts = ts_ns
        verdict = self._run(ts_ns, data)
        if verdict is None:
            st.refused += 1
        else:
            st.verdicts[verdict] = st.verdicts.get(verdict, 0) + 1
        if st.frames % self.poll_every == 0:
            self.maps.poll_events()
        return verdict

    def poll_events(self) -> None:
        self.maps.poll_events()

    def snapshot(self, now: int | None = None) -> dict:
        self.maps.poll_events()
        snap = build_snapshot(self.manifest, self.maps.raw_state(), self.stats.last_ts if now is None else now,
                              self.events.waiting())
        snap["counters"]["replay.refused"] = self.stats.refused
        return snap

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
