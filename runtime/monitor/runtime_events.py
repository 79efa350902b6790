"""The running instance's own events, in the stream and schema of the handlers' ones
(runtime/export/events.py; kinds and fields: runtime/abi/event_schema.py).

``RuntimeEvents(writer, clock)`` (``clock``: the program's) writes, with the app ``xdpmon``:

- ``instance_started``, ``attached`` (one per interface, with its ``interface``),
  ``detached`` (likewise) and ``instance_stopped``: called by the Instance;
- ``param_set``, ``block_added``, ``block_renewed``, ``block_removed``,
  ``block_expired``, ``block_refused``: the Controller's changes (``changed``, one of
  its listeners), with who asked (``by``: ctl, config, reload, asl:APP);
- ``app_enabled``, ``app_disabled``: through the EnableWatch (enable_watch.py), which
  learns of them from the Controller, from the kernel's enable records (``record``)
  and by reading the enable times every interval (``poll``);
- ``deployed``, ``deploy_refused``: a hot deploy (``ctl add``, ``remove``, ``reload``);

and, with the app whose rule fired, ``alert`` for each kernel alert record (``record``).

Times on the program's clock (the kernel's monotonic clock) are written as RFC 3339 wall
times (``wall``), with one offset between the clocks (``offset()``: the wall clock less
CLOCK_MONOTONIC, read back to back), read again every interval and taken when it moved
by more than 1 ms (the wall clock was set): so the program-clock times of the events are
exact against each other (an enable's ``until`` and its expiry's ``changed_at`` are the
same text), whatever the tick of the program's clock.
Every field of a kind is always there, null where it does not apply.
"""

from __future__ import annotations

import time
from typing import Callable

from runtime.abi.event_schema import ALERT, KERNEL_ALERT_SEVERITY, RUNTIME_APP, RUNTIME_KINDS
from runtime.export.events import rfc3339

from .enable_watch import EnableWatch

_BLOCKS = {"unblocked": "block_removed", "block_expired": "block_expired"}


OFFSET_SLACK_NS = 1_000_000


def monotonic_offset() -> int:
    """The wall clock less the kernel's monotonic clock (the live program's: the coarse
    one has the same origin), read back to back."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class RuntimeEvents:
    def __init__(self, writer, clock: Callable[[], int], offset: Callable[[], int] = monotonic_offset):
        self.writer, self.clock, self.offset = writer, clock, offset
        self._offset = offset()
        self.watch: EnableWatch | None = None
        self._rules: dict[tuple[str, int], str] = {}
        self._enable_ns: dict[int, int | None] = {}

    def emit(self, kind: str, fields: dict, severity: str | None = None, interface: str | None = None) -> dict:
        names, default = RUNTIME_KINDS[kind]
        missing = set(names) ^ set(fields)
        if missing:
            raise ValueError(f"runtime event {kind}: fields {sorted(missing)} are not its own")
        return self.writer.write(RUNTIME_APP, kind, {n: fields[n] for n in names}, severity=severity or default,
                                 interface=interface)

    def wall(self, ns: int) -> str:
        """A program-clock time as RFC 3339 wall-clock time."""
        return rfc3339(ns + self._offset)

    # ---- the controller and the kernel --------------------------------------------------------
    def watch_controller(self, controller) -> None:
        """Be told of ``controller``'s changes; watch its program's enable times."""
        self.watch = EnableWatch(controller, self.emit, self.clock, self.wall)
        self.program(controller.manifest)
        controller.listeners.append(self.changed)

    def program(self, manifest) -> None:
        """The names of the rules of the program that runs now (after a swap too)."""
        self._rules = {(a.name, r.id): r.name for a in manifest.apps for r in a.rules}
        self._enable_ns = {ev.action: ev.enable_ns for ev in manifest.events.values() if ev.type == "enable"}

    def changed(self, change: dict) -> None:
        """One of the Controller's changes (runtime/control/controller.py ``listeners``)."""
        kind = change["kind"]
        if kind in ("enabled", "disabled"):
            if self.watch is not None:
                self.watch.asked(change)
        elif kind == "param_set":
            self.emit("param_set", {k: change[k] for k in ("app", "param", "value", "by")})
        elif kind == "block_refused":
            self.emit("block_refused", {k: change[k] for k in ("prefix", "why", "by")})
        elif kind in ("blocked", "unblocked", "block_expired"):
            e = change["entry"]
            name = _BLOCKS.get(kind) or ("block_added" if e.get("renewed_ns") is None else "block_renewed")
            self.emit(name, {"prefix": e["prefix"], "action": e["action"], "ttl_ns": e["ttl_left_ns"],
                             "expires": self.wall(e["expires_ns"]), "reason": e["reason"], "by": change["by"],
                             "added_by": e["by"], "hits": e["hits"]})

    def record(self, ev: dict) -> None:
        """An alert or enable record of the kernel, decoded (runtime/asl/handlers.py ``records``)."""
        rule = self._rules.get((ev["app"], ev["rule"]))
        if ev["type"] == "alert":
            self.writer.write(ev["app"], ALERT, {"message": ev.get("message") or "", "rule": rule, "ts_ns": ev["ts"]},
                              severity=KERNEL_ALERT_SEVERITY)
        elif ev["type"] == "enable" and self.watch is not None:
            self.watch.record(ev, rule, self._enable_ns.get(ev["action"]))

    def poll(self) -> None:
        """Every interval: the clocks' offset read again (the wall clock may have been
        set: OFFSET_SLACK_NS), then the enable times (enable_watch.py)."""
        now = self.offset()
        if abs(now - self._offset) > OFFSET_SLACK_NS:      # the wall clock was set (or slewed that far)
            self._offset = now
        if self.watch is not None:
            self.watch.poll()

    # ---- the instance ---------------------------------------------------------------------------
    def started(self, status: dict, config: str | None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("xdpmon")
        except PackageNotFoundError:
            ver = None
        prog = status["program"]
        self.emit("instance_started", {"pid": status["pid"], "program_id": prog["id"], "apps": prog["apps"],
                                       "enforce": status["enforce"], "config": config, "version": ver})
        for a in status["interfaces"]:
            self.emit("attached", {"ifindex": a["ifindex"], "mode": a["mode"], "how": a["how"],
                                   "link_id": a["link_id"], "program_id": a["prog_id"]}, interface=a["name"])

    def detached(self, name: str, ifindex: int, program_id: int | None, error: str | None) -> None:
        self.emit("detached", {"ifindex": ifindex, "program_id": program_id, "error": error},
                  severity="error" if error else None, interface=name)

    def stopped(self, why: str | None, uptime_s: float, frames: int | None, failed_run: bool) -> None:
        w = self.writer
        self.emit("instance_stopped", {"stopped_by": why, "uptime_s": uptime_s, "frames": frames,
                                       "events_written": w.count, "events_failed": w.failed},
                  severity="error" if failed_run else None)

    def deployed(self, cmd: str, swap: dict) -> None:
        ch = swap["changes"]
        self.emit("deployed", {"cmd": cmd, "old_program_id": swap["old_prog_id"],
                               "new_program_id": swap["new_prog_id"], "apps_added": ch["apps_added"],
                               "apps_removed": ch["apps_removed"], "apps_changed": ch["apps_changed"],
                               "apps_kept": ch["apps_kept"], "took_ms": swap["timings_ms"].get("total"),
                               "problems": swap["problems"]},
                  severity="warning" if swap["problems"] else None)

    def deploy_refused(self, cmd: str, why: str) -> None:
        self.emit("deploy_refused", {"cmd": cmd, "why": why})
