"""When on-demand apps go on and off, and why: one event per change.

An on-demand app's state is its "until" time in the program's control block (on while
it lies ahead). Three things write it, and the runtime learns of each differently:

- the Controller (``ctl enable/disable``, a handler's ``ctx.enable``, ...): it tells
  its listeners at once (``asked``), with who asked;
- a rule's ``enable APP for D`` in the kernel: the program sends a record when it
  switches an app on that was off (``record``: the record's time is when, its rule who);
  while the app is on, a rule only pushes its time further, and sends nothing;
- the clock: an app whose time ran out is off; nothing tells of it, so ``poll()``
  (every interval) reads the control block and finds it, with the exact time it ran
  out (the until time itself).

``poll()`` also finds an app switched on by a rule whose record never came (the ring
buffer was full, the triggering app's handler is not run): found on by two polls in a
row with no record between them (the record may be on its way: it is waited for one
interval), it is told as enabled by a trigger, without its time (its rule is named
when only one rule enables it). ``EnableWatch`` keeps, per app, the until time as last known (0: off), so
each change is told once whichever way it is learnt first; it runs under its own lock,
called from the control socket's thread, the handlers' workers and the run loop.
"""

from __future__ import annotations

import threading
from typing import Callable

U64_MAX = (1 << 64) - 1


def cause_of(by: str | None) -> str:
    """What ``by`` (who asked, as the Controller and the events name it) was: ctl
    (``ctl``), config (``config``, ``reload``), asl (``asl:APP``), trigger (``rule:RULE``),
    expired (None: the clock); other (another caller of the Controller, naming itself)."""
    if by is None:
        return "expired"
    if by.startswith("asl:"):
        return "asl"
    if by.startswith("rule:"):
        return "trigger"
    return {"ctl": "ctl", "config": "config", "reload": "config"}.get(by, "other")


class EnableWatch:
    """``controller``: the program's Controller (its maps and manifest, whichever
    program runs); ``tell(kind, fields)``: writes a runtime event; ``clock``: the
    program's clock; ``wall(ns)``: a program-clock time as RFC 3339 wall time."""

    def __init__(self, controller, tell: Callable[[str, dict], object], clock: Callable[[], int],
                 wall: Callable[[int], str]):
        self.controller, self.tell, self.clock, self.wall = controller, tell, clock, wall
        self._lock = threading.Lock()
        self._known: dict[str, int] = {}
        self._pending: dict[str, int] = {}      # found on by a poll, not told yet: until
        with self._lock:
            now = self.clock()
            self._known = {app: (u if u > now else 0) for app, u in self._read().items()}

    def _read(self) -> dict[str, int]:
        c = self.controller
        _, until = c.maps.ctl()
        return {a.name: until[a.enable_bit] for a in c.manifest.apps if a.enable_bit >= 0}

    def _until_text(self, until: int) -> str | None:
        return None if until == U64_MAX else self.wall(until)

    def _enabled(self, app: str, by: str | None, rule: str | None, at: int | None, until: int,
                 for_ns: int | None) -> None:
        self._known[app] = until
        self.tell("app_enabled", {"app": app, "cause": "trigger" if by is None else cause_of(by), "by": by,
                                  "rule": rule, "changed_at": None if at is None else self.wall(at),
                                  "until": self._until_text(until), "for_ns": for_ns})

    def _disabled(self, app: str, by: str | None, at: int) -> None:
        self._known[app] = 0
        self.tell("app_disabled", {"app": app, "cause": cause_of(by), "by": by, "changed_at": self.wall(at)})

    def _ran_out(self, app: str, before: int) -> None:
        """An app known on whose time ran out before ``before``: told as expired."""
        k = self._known.get(app, 0)
        if 0 < k <= before:
            self._disabled(app, None, k)

    # ---- what the runtime is told -------------------------------------------------------------
    def asked(self, change: dict) -> None:
        """A Controller's change (its listeners' dict): ``enabled`` or ``disabled``."""
        app, by = change["app"], change.get("by")
        with self._lock:
            now = self.clock()
            self._pending.pop(app, None)
            self._ran_out(app, now)
            if change["kind"] == "enabled":
                until = U64_MAX if change["until_ns"] is None else change["until_ns"]
                self._enabled(app, by, None, now, until, None if until == U64_MAX else until - now)
            elif self._known.get(app, 0):
                self._disabled(app, by, now)

    def record(self, ev: dict, rule: str | None, enable_ns: int | None) -> None:
        """A rule's enable record (decoded: ``ts``, ``app`` the rule's, ``enabled`` the app
        it switched on); ``rule`` its name, ``enable_ns`` for how long."""
        app, ts = ev["enabled"], ev["ts"]
        with self._lock:
            self._pending.pop(app, None)
            self._ran_out(app, ts)                       # the kernel found it off at ts
            if self._known.get(app, 0):
                return                                   # known on already (poll() found it first)
            # the time this enable set (a later rule may have pushed it further since: no event)
            until = ts + enable_ns if enable_ns else self._read().get(app, 0)
            self._enabled(app, f"rule:{rule}" if rule else None, rule, ts, until, enable_ns)

    def poll(self) -> None:
        """Read the control block: expiries, enables no record told of, time pushed further.
        Under the Controller's lock, so that no change of its lies between its write and
        its telling."""
        with self.controller.lock, self._lock:
            now = self.clock()
            cur = self._read()
            for app in list(self._known):
                if app not in cur:                       # a swap took the app out
                    del self._known[app]
                    self._pending.pop(app, None)
            for app, u in cur.items():
                if app not in self._known:               # a swap brought it in (its state carried)
                    self._known[app] = u if u > now else 0
                    continue
                k = self._known[app]
                seen = self._pending.pop(app, None)
                if not k and seen is not None:           # on at the last poll, and no record came since
                    by = self._enabler(app)
                    self._enabled(app, by, by[5:] if by else None, None, seen, None)
                    k = seen
                if k and u > now:
                    self._known[app] = u                 # on still (a rule pushed its time further)
                    continue
                if k:
                    self._disabled(app, None, u if u >= k else k)
                if u > now:
                    self._pending[app] = u               # told at the next poll, unless its record comes

    def _enabler(self, app: str) -> str | None:
        """``rule:NAME`` of the one rule that enables ``app``, where only one does."""
        rules = [r.name for a in self.controller.manifest.apps for r in a.rules
                 for x in r.actions if x.type == "enable" and _target(self.controller.manifest, x) == app]
        return f"rule:{rules[0]}" if len(rules) == 1 else None


def _target(manifest, action) -> str | None:
    ev = manifest.events.get(action.id)
    return ev.enables if ev is not None else None
