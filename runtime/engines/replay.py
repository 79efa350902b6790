"""Replaying captures through an engine.

``replay_captures(engine, paths, on_events=...)`` runs every frame of the
captures, in order, through the engine, and after each frame hands the events
it produced (taken from the engine's queue) to ``on_events(list)``: consumers
see events as they occur, in capture order, while the replay runs. A capture
that cannot be read to its end is processed as far as it is readable; the
reason is kept in ``problems`` and the replay goes on with the next capture.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from runtime.capture.pcap import CaptureError, read_frames

from .base import Engine


@dataclass
class Replay:
    """What a replay saw besides the engine's maps: events per (app, type), the
    events themselves when ``keep_events``, and the captures' problems."""
    engine: Engine
    on_events: Callable[[list[dict]], object] | None = None
    keep_events: bool = False
    events: list[dict] = field(default_factory=list)
    event_counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def feed(self, frames: Iterable) -> None:
        """Run frames (objects with ``ts_ns`` and ``data``) through the engine."""
        run, queue = self.engine.run_frame, self.engine.events
        for fr in frames:
            run(fr.ts_ns, fr.data)
            if queue:
                self._hand_on()

    def feed_capture(self, path: str) -> bool:
        """Replay one capture; False (with the reason in ``problems``) when it
        could not be read to its end."""
        try:
            self.feed(read_frames(path))
            return True
        except CaptureError as e:
            self.problems.append(str(e))
        except OSError as e:
            self.problems.append(f"{path}: {e.strerror or e}")
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


def replay_captures(engine: Engine, paths: Iterable[str], *, on_events=None, keep_events: bool = False) -> Replay:
    rep = Replay(engine, on_events, keep_events)
    for path in paths:
        rep.feed_capture(path)
    rep.flush()
    return rep
