"""The engine protocol: what every engine (kernel replay, reference, live) offers.

An engine is made from compiled artifacts (``compiler.driver.Artifacts``) and:

- ``run_frame(ts_ns, data, wire_len=None)``: feeds one frame on the clock
  ``ts_ns`` (``wire_len``: its length on the wire, pkt.len, when the capture
  kept fewer bytes); returns the XDP verdict, or None when the frame was refused
  (counted in ``stats``, by reason); ``refuse(ts_ns, reason)`` counts a frame
  that its capture could not hand on (e.g. of a link type XDP never sees);
- ``maps``: a runtime.dataplane.maps.MapAccess (``set_param``, ``set_enabled``,
  ``params()``, ``ctl()``, ``counters()``, ``raw_state()``);
- ``poll_events()``: takes the records waiting in the program's ring buffer; each
  is decoded and put in ``events``, an ``EventQueue``. ``run_frame`` polls
  every ``poll_every`` frames (default: after every frame, so events are
  delivered as they occur, in capture order);
- ``snapshot(now=None)``: polls, then decodes every map on the clock ``now``
  (default: the latest frame's time); its ``events`` are those waiting in the
  queue, not taken by it; ``app_snapshot(app, stats=None)``: one app's part of it
  (only the statistics named in ``stats``), on the latest frame's time, without polling;
- ``stats`` (a ReplayStats), ``close()``, and ``with``.

Subclasses implement ``_run(ts_ns, data, wire_len)`` (the verdict, or None when refused)
and pass their ``maps`` to ``Engine.__init__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, deque
from dataclasses import dataclass, field

from runtime.abi.manifest import Manifest
from runtime.abi.snapshot import build_snapshot
from runtime.capture.pcap import REFUSALS as CAPTURE_REFUSALS
from runtime.dataplane.bpf_test_run import ETH_HLEN, XDP_TEST_RUN_MAX
from runtime.dataplane.maps import MapAccess

QUEUE_SIZE = 1 << 16             # events waiting for their consumer, at most


# Why a frame was not run, as counted in ReplayStats.refused_by and shown by replay.
REFUSED_REASONS = {
    "short": "shorter than an Ethernet header (14 bytes)",
    "oversize": "longer than the kernel runs in a test run "
                f"({XDP_TEST_RUN_MAX:,} bytes with the replay header)",
    **CAPTURE_REFUSALS,
}
WIRE_LEN_MAX = (1 << 32) - 1     # pkt.len is a __u32


@dataclass
class ReplayStats:
    """What an engine was fed: frames (run or refused), refusals by reason
    (REFUSED_REASONS), frames the capture had cut (``cut``: fewer bytes kept than
    were on the wire), frames earlier than a frame before them (``backwards``, by
    at most ``max_back_ns``), verdicts, and the latest time seen (``last_ts``)."""
    frames: int = 0
    refused: int = 0
    refused_by: Counter = field(default_factory=Counter)
    cut: int = 0
    backwards: int = 0
    max_back_ns: int = 0
    verdicts: dict = field(default_factory=dict)
    last_ts: int = 0

    def clock(self, ts_ns: int) -> None:
        if ts_ns >= self.last_ts:
            self.last_ts = ts_ns
        else:
            self.backwards += 1
            if self.last_ts - ts_ns > self.max_back_ns:
                self.max_back_ns = self.last_ts - ts_ns

    def counters(self) -> dict[str, int]:
        """The replay's counters as a snapshot shows them."""
        out = {"replay.refused": self.refused}
        out.update((f"replay.refused.{r}", self.refused_by[r]) for r in REFUSED_REASONS)
        out["replay.cut"] = self.cut
        out["replay.backwards"] = self.backwards
        return out


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
    def _run(self, ts_ns: int, data: bytes, wire_len: int) -> int | None:
        """Run one frame (``wire_len``: pkt.len): its verdict, or None when the engine refuses it."""

    def run_frame(self, ts_ns: int, data: bytes, wire_len: int | None = None) -> int | None:
        """Run one frame; returns the XDP verdict, or None when refused. ``wire_len``
        is the frame's length on the wire (pkt.len), when the capture kept only
        ``data`` of it (default and at least: ``len(data)``)."""
        st = self.stats
        st.frames += 1
        st.clock(ts_ns)
        n = len(data)
        if wire_len is None or wire_len <= n:
            wire_len = n
        else:
            st.cut += 1
            if wire_len > WIRE_LEN_MAX:
                wire_len = WIRE_LEN_MAX
        verdict = self._run(ts_ns, data, wire_len)
        if verdict is None:
            st.refused += 1
            st.refused_by["short" if n < ETH_HLEN else "oversize"] += 1
        else:
            st.verdicts[verdict] = st.verdicts.get(verdict, 0) + 1
        if st.frames % self.poll_every == 0:
            self.maps.poll_events()
        return verdict

    def refuse(self, ts_ns: int, reason: str) -> None:
        """Count a frame that its source could not hand on as a frame this program
        reads (``reason``: a key of REFUSED_REASONS)."""
        if reason not in REFUSED_REASONS:
            raise ValueError(f"unknown reason {reason!r} for a refused frame")
        st = self.stats
        st.frames += 1
        st.clock(ts_ns)
        st.refused += 1
        st.refused_by[reason] += 1

    def poll_events(self) -> None:
        self.maps.poll_events()

    def snapshot(self, now: int | None = None) -> dict:
        self.maps.poll_events()
        snap = build_snapshot(self.manifest, self.maps.raw_state(), self.stats.last_ts if now is None else now,
                              self.events.waiting())
        snap["counters"].update(self.stats.counters())
        return snap

    def app_snapshot(self, app: str, stats: list[str] | None = None) -> dict:
        return self.maps.app_snapshot(app, self.stats.last_ts, stats)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
