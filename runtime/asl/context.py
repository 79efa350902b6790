"""What a handler can do: the context object each app's HANDLER is made with.

    ctx.app                      the app's name
    ctx.log                      its logger (``xdpmon.asl.APP``)
    ctx.options                  the app's ASL options from the deployment config (read-only mapping)
    ctx.emit(kind, severity="info", **fields)   an application event: one JSON line (runtime/export/events.py)
    ctx.alert(message, severity="warning", **fields)   an alert: an event of kind "alert" with its severity
    ctx.now()                    the program's clock, ns: what event ``ts`` fields are read on (the
                                 kernel's clock live, the capture's time in replay)
    ctx.params                   the app's params as the program reads them now (read-only mapping)
    ctx.set_param(name, value)   set one of the app's own params (a number, or text with units: "2k")
    ctx.stats(name)              the current value of one of the app's statistics, as a snapshot shows it
    ctx.enable(app, for_=None)   switch an on-demand app on (for a duration: ns or "60s"; None: until disabled)
    ctx.disable(app)             switch it off
    ctx.block(prefix, ttl=None, reason="")   add (or renew) a blocklist entry; returns it
    ctx.unblock(prefix)          remove one; returns it
    ctx.blocks()                 the blocklist's entries with their hits (as ctl blocks lists them)

Every change goes through the program's Controller (runtime/control/controller.py),
the one writer of params, enable bits and the blocklist, and is marked as made by
``asl:APP``. A change the controller refuses (an unknown app or param, a bad value,
a prefix on the allowlist, a full blocklist, no blocklist in this program) raises
``ControlError`` (a ValueError) after logging it as a warning; a handler that does
not catch it has its call counted as an error, and goes on with its next event.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Callable, Mapping

from runtime.abi.event_schema import ALERT, ALERT_FIELDS, SEVERITIES
from runtime.abi.manifest import Manifest
from runtime.control.controller import ControlError, Controller

__all__ = ["AslContext", "ControlError", "StatError"]


class StatError(LookupError):
    """``ctx.stats(name)`` of a statistic the app does not have."""


class AslContext:
    """The context of app ``app``. ``controller``: the program's Controller (None:
    nothing can be changed, params are the defaults); ``writer``: where ``emit``
    writes (runtime.export.events.EventWriter; None: events are only counted);
    ``snapshot(app, stats)``: the app's part of a snapshot with those statistics."""

    ControlError = ControlError        # for handlers: ``except ctx.ControlError``

    def __init__(self, manifest: Manifest | dict, app: str, *, controller: Controller | None = None,
                 writer=None, snapshot: Callable[[str, list[str] | None], dict] | None = None,
                 options: Mapping | None = None, clock: Callable[[], int] | None = None):
        man = Manifest.of(manifest)
        a = man.app(app)
        self.app: str = app
        self.log: logging.Logger = logging.getLogger(f"xdpmon.asl.{app}")
        self.stat_names: tuple[str, ...] = a.stats
        self.options: Mapping = MappingProxyType(dict(options or {}))
        self._defaults = {p.name: p.default for p in a.params}
        self._controller = controller
        self._writer = writer
        self._snapshot = snapshot
        self._by = f"asl:{app}"
        self._clock = clock
        self.emitted = 0

    def now(self) -> int:
        """The program's clock in ns (0 when the host was given none)."""
        return self._clock() if self._clock is not None else 0

    # ---- events --------------------------------------------------------------------------
    def emit(self, kind: str, *, severity: str = "info", **fields) -> None:
        """Write an application event of this app: ``kind`` names it, ``fields`` are its data;
        ``severity`` (info by default; syslog's names) is the event's, not a field: an event
        that reports an attack is ``warning`` or ``critical``, so that a log pipeline or syslog
        can route it. The kind ``alert`` is ``alert()``'s."""
        if kind == ALERT:
            raise TypeError("the kind 'alert' is for alerts: write ctx.alert(message, severity=..., **fields)")
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        if self._writer is not None:
            self._writer.write(self.app, kind, fields, severity=severity)
        elif not isinstance(kind, str) or not kind:
            raise TypeError(f"an event's kind is a non-empty text, not {kind!r}")
        self.emitted += 1

    def alert(self, message: str, severity: str = "warning", **fields) -> None:
        """Write an alert of this app: an event of kind ``alert`` whose fields are
        ``message``, ``rule`` (null: the ASL's, not a kernel rule's), ``ts_ns`` (the
        program's clock, ``now()``) and ``fields``; ``severity`` one of critical, error,
        warning, notice, info, debug (syslog's, and what a syslog output sends it as)."""
        taken = sorted(set(fields) & set(ALERT_FIELDS))
        if taken:
            raise TypeError(f"an alert's {', '.join(taken)} is its own: name the field otherwise")
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        body = {"message": str(message), "rule": None, "ts_ns": self.now(), **fields}
        if self._writer is not None:
            self._writer.write(self.app, ALERT, body, severity=severity)
        self.emitted += 1

    # ---- reading -------------------------------------------------------------------------
    @property
    def params(self) -> Mapping[str, int]:
        """The app's params, {name: value}, as the program reads them now."""
        if self._controller is None:
            return MappingProxyType(dict(self._defaults))
        return MappingProxyType(self._controller.params(self.app))

    def stats(self, name: str):
        """The current value of statistic ``name`` of this app, decoded as a snapshot
        decodes it (``[{"key": ..., "value": ...}, ...]`` when keyed, ``{"value": ...}``
        when not, ``{"size", "open"}`` for a track table)."""
        if name not in self.stat_names:
            known = ", ".join(self.stat_names) or "none"
            raise StatError(f"app '{self.app}' has no statistic '{name}' (its statistics: {known})")
        if self._snapshot is None:
            raise StatError(f"the statistics of '{self.app}' cannot be read here")
        return self._snapshot(self.app, [name])["stats"][name]

    # ---- changing the program --------------------------------------------------------------
    def _control(self, what: str, fn: Callable[[Controller], object]):
        if self._controller is None:
            e = ControlError("this program cannot be changed from here (no controller)")
        else:
            try:
                return fn(self._controller)
            except ControlError as refused:
                e = refused
        self.log.warning("%s refused: %s", what, e)
        raise e

    def set_param(self, name: str, value: int | str) -> int:
        """Set this app's param ``name``; returns the value set."""
        return self._control(f"set_param({name!r}, {value!r})",
                             lambda c: c.set_param(self.app, name, value, by=self._by))

    def enable(self, app: str, for_: int | str | None = None) -> int:
        """Enable on-demand app ``app`` for ``for_`` (ns, or text such as "60s";
        None: until disabled); returns the program-clock time it runs until."""
        return self._control(f"enable({app!r}, {for_!r})", lambda c: c.enable(app, for_, by=self._by))

    def disable(self, app: str) -> None:
        self._control(f"disable({app!r})", lambda c: c.disable(app, by=self._by))

    def block(self, prefix: str, ttl: int | str | None = None, reason: str = "") -> dict:
        """Block ``prefix`` (an address or CIDR prefix) for ``ttl`` (ns, or text
        such as "5m"; None: the blocklist's default); returns the entry."""
        return self._control(f"block({prefix!r})",
                             lambda c: c.block(prefix, ttl, reason or f"asl {self.app}", by=self._by))

    def unblock(self, prefix: str) -> dict:
        return self._control(f"unblock({prefix!r})", lambda c: c.unblock(prefix, by=self._by))

    def blocks(self) -> list[dict]:
        """The blocklist's entries, with the hits the program counted (``ctl blocks``)."""
        return self._control("blocks()", lambda c: c.blocks())
