"""The one writer of a running program's params, enable bits and blocklist.

Everything that changes what the loaded program does while it runs goes through
a ``Controller``: the control socket (runtime/control/socket.py), the ASL
handlers' context (runtime/asl/), the deployment config, the CLI. It holds a
lock, so those callers may live in different threads; every change takes effect
on the next packet (params and enable bits are read by the program per packet;
nothing is reloaded).

Names and values are checked here, once: an unknown app or param, a value that
does not fit, an always-on app asked to enable, each raises ``ControlError``
with a message for the operator (the socket answers it, ``ctl`` exits 2).

``clock()`` is the program's clock in ns: the kernel's monotonic clock for a
live program (what bpf_ktime_get_ns() returns), the capture's clock in replay.
"""

from __future__ import annotations

import threading
from typing import Callable

from runtime.abi.manifest import Manifest
from runtime.dataplane.maps import U64_MAX, MapAccess

from .values import parse_duration, parse_value


class ControlError(ValueError):
    """A command that cannot be done as asked; ``str()`` says why."""


class Controller:
    def __init__(self, manifest: Manifest | dict, maps: MapAccess, clock: Callable[[], int],
                 blocklist=None):
        self.manifest = Manifest.of(manifest)
        self.maps = maps
        self.clock = clock
        self.blocklist = blocklist          # runtime/control/blocklist.py, or None (no filters)
        self.lock = threading.RLock()
        # told of every change, after it is made, as a dict: {"kind": "param_set", "app", "param", "value",
        # "by"}, {"kind": "enabled", "app", "until_ns", "by"}, {"kind": "disabled", "app", "by"},
        # {"kind": "blocked" | "unblocked" | "block_expired", "entry", "by"} and, for a block refused,
        # {"kind": "block_refused", "prefix", "why", "by"} (runtime/monitor/runtime_events.py)
        self.listeners: list[Callable[[dict], object]] = []

    def rebind(self, manifest: Manifest | dict, maps: MapAccess, clock: Callable[[], int]) -> None:
        """Control another program from now on (a swap: runtime/deploy/swap.py); the
        blocklist's maps are pinned, the same in both programs."""
        with self.lock:
            self.manifest = Manifest.of(manifest)
            self.maps, self.clock = maps, clock
            if self.blocklist is not None:
                self.blocklist.maps, self.blocklist.clock = maps, clock
                self.blocklist.manifest = self.manifest

    # ---- names ------------------------------------------------------------------------------
    def app(self, name: str):
        try:
            return self.manifest.app(name)
        except KeyError:
            known = ", ".join(a.name for a in self.manifest.apps)
            raise ControlError(f"no app '{name}' in this program (apps: {known})") from None

    def _param(self, app: str, name: str):
        a = self.app(app)
        try:
            return self.manifest.param(app, name)
        except KeyError:
            known = ", ".join(p.name for p in a.params) or "none"
            raise ControlError(f"app '{app}' has no param '{name}' (its params: {known})") from None

    def _tell(self, change: dict) -> None:
        for fn in self.listeners:
            fn(change)

    # ---- params --------------------------------------------------------------------------------
    def params(self, app: str | None = None) -> dict:
        """{app: {param: value}} (or one app's {param: value}), as the program reads them now."""
        with self.lock:
            values = self.maps.params()
        out: dict[str, dict[str, int]] = {}
        for p in self.manifest.params:
            out.setdefault(p.app, {})[p.name] = values[p.index]
        if app is not None:
            self.app(app)
            return out.get(app, {})
        return out

    def set_param(self, app: str, name: str, value: int | str, by: str = "ctl") -> int:
        """Set ``app.name`` (a number or text with the language's units); the value set."""
        p = self._param(app, name)
        try:
            v = parse_value(value, f"{app}.{name}")
        except ValueError as e:
            raise ControlError(str(e)) from None
        if v > U64_MAX:
            raise ControlError(f"{app}.{name}: {v} does not fit in 64 bits")
        with self.lock:
            self.maps.set_param(app, p.name, v)
        self._tell({"kind": "param_set", "app": app, "param": name, "value": v, "by": by})
        return v

    # ---- enable bits ------------------------------------------------------------------------------
    def enabled(self) -> dict[str, dict]:
        """Per app: {"mode", "enabled", "until_ns"} (until_ns None: always on or until disabled)."""
        with self.lock:
            _, until = self.maps.ctl()
        now = self.clock()
        out = {}
        for a in self.manifest.apps:
            if a.enable_bit < 0:
                out[a.name] = {"mode": a.mode, "enabled": True, "until_ns": None}
            else:
                u = until[a.enable_bit]
                out[a.name] = {"mode": a.mode, "enabled": u > now,
                               "until_ns": (None if u == U64_MAX else u) if u > now else None}
        return out

    def enable(self, app: str, for_: int | str | None = None, by: str = "ctl") -> int:
        """Enable an on-demand app for ``for_`` (ns, or text such as ``60s``; None:
        until disabled); returns the time it runs until (U64_MAX: until disabled)."""
        a = self.app(app)
        if a.enable_bit < 0:
            raise ControlError(f"app '{app}' is always on (mode always): there is nothing to enable")
        if for_ is None:
            until = U64_MAX
        else:
            try:
                ns = for_ if isinstance(for_, int) and not isinstance(for_, bool) and for_ > 0 \
                    else parse_duration(for_, "--for")
            except ValueError as e:
                raise ControlError(str(e)) from None
            until = min(U64_MAX, self.clock() + ns)
        with self.lock:           # told under the lock: what reads the enable bits sees the change told
            self.maps.set_enabled(app, until)
            self._tell({"kind": "enabled", "app": app, "until_ns": None if until == U64_MAX else until, "by": by})
        return until

    def disable(self, app: str, by: str = "ctl") -> None:
        a = self.app(app)
        if a.enable_bit < 0:
            raise ControlError(f"app '{app}' is always on (mode always): it cannot be disabled")
        with self.lock:
            self.maps.set_enabled(app, 0)
            self._tell({"kind": "disabled", "app": app, "by": by})

    # ---- the blocklist (runtime/control/blocklist.py) ---------------------------------------
    def _filters(self):
        if self.blocklist is None:
            raise ControlError("this program has no blocklist")
        return self.blocklist

    def block(self, prefix: str, ttl: int | str | None = None, reason: str = "", by: str = "ctl") -> dict:
        """Add (or renew) a blocklist entry; returns it as ``blocks()`` lists it."""
        try:
            with self.lock:
                entry = self._filters().add(prefix, ttl, reason, by)
        except ControlError as e:
            self._tell({"kind": "block_refused", "prefix": str(prefix), "why": str(e), "by": by})
            raise
        self._tell({"kind": "blocked", "entry": entry, "by": by})
        return entry

    def unblock(self, prefix: str, by: str = "ctl") -> dict:
        with self.lock:
            entry = self._filters().remove(prefix)
        self._tell({"kind": "unblocked", "entry": entry, "by": by})
        return entry

    def blocks(self) -> list[dict]:
        with self.lock:
            return self._filters().entries() if self.blocklist is not None else []

    def sweep(self) -> list[dict]:
        """Remove expired blocklist entries (the kernel already ignores them); the removed."""
        if self.blocklist is None:
            return []
        with self.lock:
            gone = self.blocklist.sweep()
        for e in gone:
            self._tell({"kind": "block_expired", "entry": e, "by": None})
        return gone
