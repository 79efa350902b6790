"""Replaying captures through an engine.

``replay_captures(engine, paths, on_events=...)`` runs every frame of the
captures, in order, through the engine, and after each frame hands the events
it produced (taken from the engine's queue) to ``on_events(list)``: consumers
see events as they occur, in capture order, while the replay runs. A capture
that cannot be read to its end is processed as far as it is readable; the
reason is kept in ``problems`` and the replay goes on with the next capture.
Frames a capture cannot hand on (of an interface of another link type) are
counted by the engine as refused, and the capture's reason is kept in
``warnings``. ``summary`` and ``backwards_warning`` say in words what the
engine's ReplayStats counted besides the frames it ran.
``Replay.stop()`` ends the replay after the frame being run, ``interrupt()``
(for a SIGINT handler) also while it waits for input; ``stopped`` then says where.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from runtime.capture.pcap import CaptureError, read_frames

from .base import REFUSED_REASONS, Engine, ReplayStats

TICK_NS = 1_000_000_000        # the ASL's on_tick() period in capture time (live: the run loop's second)


class _Interrupted(BaseException):
    """Raised by Replay.interrupt() while the replay waits for its next frame."""


@dataclass
class Replay:
    """What a replay saw besides the engine's maps: events per (app, type), the
    events themselves when ``keep_events``, and the captures' problems."""
    engine: Engine
    on_events: Callable[[list[dict]], object] | None = None
    keep_events: bool = False
    # called once per second of capture time, after that second's events (the ASL host's
    # tick: a handler's on_tick() sees the capture's seconds go by as live it sees the clock's)
    on_tick: Callable[[], object] | None = None
    next_tick_ns: int | None = None
    events: list[dict] = field(default_factory=list)
    event_counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopping: bool = False
    stopped: str | None = None        # where the replay stopped: "in CAPTURE, after its first N frames"
    busy: bool = False                # running a frame or handing on its events

    def stop(self) -> None:
        """End the replay after the frame being run."""
        self.stopping = True

    def interrupt(self) -> None:
        """stop(), for a SIGINT handler: at once while the replay waits for its next
        frame (a FIFO whose writer sends nothing), else after the frame being run, so
        that the maps and counters always hold whole frames."""
        self.stopping = True
        if not self.busy:
            raise _Interrupted()

    def feed(self, frames: Iterable) -> None:
        """Run frames (runtime.capture.pcap.Frame: ``ts_ns``, ``data``, ``wire_len``,
        ``refused``) through the engine until they end or stop() is called."""
        eng = self.engine
        run, refuse, queue = eng.run_frame, eng.refuse, eng.events
        try:
            for fr in frames:
                self.busy = True
                if self.stopping:
                    break
                if self.on_tick is not None:
                    self._tick_before(fr.ts_ns)
                if fr.refused is None:
                    run(fr.ts_ns, fr.data, fr.wire_len)
                else:
                    refuse(fr.ts_ns, fr.refused)
                if queue:
                    self._hand_on()
                self.busy = False
        finally:
            self.busy = False

    def _tick_before(self, ts_ns: int) -> None:
        """A tick when ``ts_ns`` reaches the next second boundary of capture time (one,
        however many boundaries a gap in the capture spans, as a late live tick would)."""
        if self.next_tick_ns is None:
            self.next_tick_ns = (ts_ns // TICK_NS + 1) * TICK_NS
        elif ts_ns >= self.next_tick_ns:
            self.flush()
            self.on_tick()
            self.next_tick_ns = (ts_ns // TICK_NS + 1) * TICK_NS

    def feed_capture(self, path: str) -> bool:
        """Replay one capture; False (with the reason in ``problems``) when it
        could not be read to its end."""
        start = self.engine.stats.frames
        try:
            self.feed(read_frames(path, warn=self.warnings.append))
            return True
        except CaptureError as e:
            self.problems.append(str(e))
        except OSError as e:
            self.problems.append(f"{path}: {e.strerror or e}")
        finally:
            if self.stopping and self.stopped is None:
                n = self.engine.stats.frames - start
                self.stopped = f"in {path}, after its first {n:,} frame{'' if n == 1 else 's'}"
        return False

    def flush(self) -> None:
        """Take what the engine has not delivered yet (its last ring buffer poll)."""
        self.engine.poll_events()
        if self.engine.events:
            self._hand_on()

    def _hand_on(self) -> None:
        batch = self.engine.events.take()
        for ev in batch:
            self.event_counts[(ev["app"], ev["type"])] += 1
        if self.keep_events:
            self.events.extend(batch)
        if self.on_events is not None:
            self.on_events(batch)

    def run(self, paths: Iterable[str]) -> "Replay":
        """Replay the captures in order (until stopped), then flush."""
        try:
            for path in paths:
                if self.stopping:
                    self.stopped = self.stopped or f"before {path}"
                    break
                self.feed_capture(path)
        except _Interrupted:
            pass
        self.busy = True                  # the last events are taken whole
        try:
            if self.stopping and self.stopped is None:
                self.stopped = "after the last capture"
            self.flush()
        finally:
            self.busy = False
        return self


def replay_captures(engine: Engine, paths: Iterable[str], *, on_events=None, keep_events: bool = False) -> Replay:
    return Replay(engine, on_events, keep_events).run(paths)


def summary(st: ReplayStats, engine: str) -> str:
    """The closing line of a replay: frames run, refused (by reason) and cut."""
    refused = "; ".join(f"{st.refused_by[r]:,} {why}" for r, why in REFUSED_REASONS.items() if st.refused_by[r])
    return (f"{st.frames:,} frames replayed through the {engine} engine ({st.refused:,} refused"
            f"{': ' + refused if refused else ''}; {st.cut:,} cut by the capture's snap length, "
            f"counted at their length on the wire)")


def backwards_warning(st: ReplayStats) -> str | None:
    """What time going backwards does, when it did."""
    if not st.backwards:
        return None
    return (f"time went backwards {st.backwards:,} times in the captures, by up to {st.max_back_ns:,} ns "
            f"(replay.backwards): a windowed statistic then restarts in the earlier window, and expiries "
            f"and rate limits run on the earlier clock; give the captures in time order")
