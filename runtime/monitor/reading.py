"""What one interval of a running program shows.

``Reader.read()`` reads every map once (``MapAccess.raw_state``: batch lookups,
per-CPU values summed), decodes the snapshot through the same decoder as
``replay`` (runtime/abi/snapshot.py) and adds what only two reads in a row can
say:

- the snapshot lists, per keyed statistic, its ``keys_limit`` largest keys
  (default ``KEYS_LIMIT``; the app's ``keys_listed`` gives how many it has):
  reading a million-entry map then decodes a thousand (runtime/abi/entries.py);
- ``rates``: per keyed statistic, per key, the per-second rate of every member
  that only grows (a ``count`` or a ``sum`` without a window): packets/s,
  bytes/s, ... over the interval (keys new this interval: from zero; where only
  the largest keys are listed, keys new to the list have none yet);
- ``counters_delta`` / ``counter_rates``: every global counter's increase over
  the interval, and per second (frames/s, parse outcomes, drops);
- ``fill``: entries of every hash map against its size, a warning at
  ``FILL_WARN`` (80 %);
- ``interfaces``: per monitored interface (by name), its frames and bytes as the
  program counted them on receive (before any filter or app) and their rates;
- ``warnings``: what the interval saw go wrong where it happened: maps at 80 %
  or more, insert failures (a full map: new keys not counted), ring-buffer drops,
  rate-limited sends, failed tail calls.

The result is one plain dict (``Reading.to_json()``): what ``--json`` prints, the
live view shows, and the control socket's ``stats`` answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from runtime.abi.manifest import Manifest
from runtime.abi.snapshot import build_snapshot, key_text

FILL_WARN = 0.8
KEYS_LIMIT = 1000          # keys listed per keyed statistic (its largest), above: counted, not listed


@dataclass
class Reading:
    now_ns: int
    interval_s: float                     # since the previous reading (0 for the first)
    snapshot: dict
    rates: dict                           # {app: {stat: {key_text: {member: per_s}}}}
    counters_delta: dict
    counter_rates: dict
    fill: dict                            # {map: {"entries", "size", "fill", "stats"}}
    warnings: list[str] = field(default_factory=list)
    seq: int = 0
    interfaces: dict = field(default_factory=dict)   # {name: {"ifindex", "frames", "bytes", "frames_per_s", "bytes_per_s"}}

    def to_json(self) -> dict:
        return {"seq": self.seq, "now_ns": self.now_ns, "interval_s": round(self.interval_s, 6),
                **self.snapshot, "interfaces": self.interfaces, "rates": self.rates,
                "counters_delta": self.counters_delta, "counter_rates": self.counter_rates, "fill": self.fill,
                "warnings": self.warnings}


def growing_members(manifest: Manifest) -> dict[tuple[str, str], set[str]]:
    """(app, stat) -> members that only grow: a count or a sum without a window."""
    maps = {m["name"]: m for m in manifest.raw["maps"]}
    out: dict[tuple[str, str], set[str]] = {}
    for app in manifest.raw["apps"]:
        for st in app["stats"]:
            for mem in st.get("members", ()):
                m = maps[mem["map"]]
                slot = next((s for s in m.get("slots", ()) if s["name"] == mem["slot"]), None)
                if slot and slot["func"] in ("count", "sum") and slot["window_ns"] is None and m["key_fields"]:
                    out.setdefault((app["name"], st["name"]), set()).add(mem["name"])
    return out


def fill_levels(manifest: Manifest, raw) -> dict:
    """Entries of each hash map against its size (arrays are always full: left out)."""
    out = {}
    for m in manifest.raw["maps"]:
        if "hash" not in m.get("bpf_type", "array") or "size" not in m:
            continue
        n = len(raw.maps.get(m["name"], ()))
        stats = sorted({f"{u['app']}.{u['stat']}" for u in m.get("uses", ())})
        out[m["name"]] = {"entries": n, "size": m["size"], "fill": round(n / m["size"], 4) if m["size"] else 0,
                          "stats": stats}
    return out


class Reader:
    """Reads a program's maps (``maps``: a MapAccess) on ``clock`` every call."""

    def __init__(self, manifest: Manifest | dict, maps, clock: Callable[[], int],
                 extra_counters: Callable[[], dict] | None = None, keys_limit: int | None = KEYS_LIMIT,
                 interfaces: dict[int, str] | None = None):
        self.manifest = Manifest.of(manifest)
        self.interface_names = dict(interfaces or {})     # ifindex -> name (the interfaces counted)
        self.maps = maps
        self.clock = clock
        self.extra_counters = extra_counters      # user-space counters shown with the kernel's
        self.keys_limit = keys_limit
        self.growing = growing_members(self.manifest)
        self._prev_listed: set = set()           # (app, stat) whose keys were cut to the largest
        self.prev: Reading | None = None
        self._prev_values: dict = {}
        self.seq = 0

    def rebind(self, manifest, maps, clock: Callable[[], int]) -> None:
        """Read another program's maps from now on (a swap: runtime/deploy/swap.py); the
        rates of the statistics both programs keep go on from the last reading."""
        self.manifest = Manifest.of(manifest)
        self.maps, self.clock = maps, clock
        self.growing = growing_members(self.manifest)

    def read(self, events=()) -> Reading:
        raw = self.maps.raw_state()
        now = self.clock()
        snap = build_snapshot(self.manifest, raw, now, events, keys_limit=self.keys_limit)
        if self.extra_counters is not None:
            snap["counters"].update(self.extra_counters())
        dt = (now - self.prev.now_ns) / 1e9 if self.prev else 0.0
        values = self._growing_values(snap)
        listed = {(a, st) for a, app in snap["apps"].items() for st in app.get("keys_listed", ())}
        rates = self._rates(values, dt, listed | self._prev_listed)
        self._prev_listed = listed
        prev_c = self.prev.snapshot["counters"] if self.prev else {}
        delta = {k: v - prev_c.get(k, 0) for k, v in snap["counters"].items()}
        crates = {k: round(d / dt, 3) for k, d in delta.items()} if dt > 0 else {}
        fill = fill_levels(self.manifest, raw)
        self.seq += 1
        r = Reading(now, dt, snap, rates, delta, crates, fill, self._warnings(delta, fill), self.seq,
                    self._interfaces(dt))
        self.prev, self._prev_values = r, values
        return r

    def _interfaces(self, dt: float) -> dict:
        if not self.interface_names or self.manifest.filters is None:
            return {}
        prev = self.prev.interfaces if self.prev else {}
        out = {}
        for ifindex, c in self.maps.interface_counters().items():
            name = self.interface_names.get(ifindex, str(ifindex))
            before = prev.get(name, {"frames": 0, "bytes": 0})
            out[name] = {"ifindex": ifindex, **c}
            if dt > 0:
                out[name]["frames_per_s"] = round((c["frames"] - before["frames"]) / dt, 3)
                out[name]["bytes_per_s"] = round((c["bytes"] - before["bytes"]) / dt, 3)
        return out

    def _growing_values(self, snap: dict) -> dict:
        out = {}
        for (app, stat), members in self.growing.items():
            entries = snap["apps"][app]["stats"].get(stat)
            if not isinstance(entries, list):
                continue
            for e in entries:
                k = key_text(e["key"])
                for mem in members:
                    v = e["value"].get(mem)
                    if isinstance(v, int):
                        out[(app, stat, k, mem)] = v
        return out

    def _rates(self, values: dict, dt: float, cut: set) -> dict:
        """Rates of the listed keys; where only the largest keys are listed, a key
        not listed last time has no rate yet (its earlier value was not read)."""
        out: dict = {}
        if dt <= 0:
            return out
        prev = self._prev_values
        for (app, stat, k, mem), v in values.items():
            before = prev.get((app, stat, k, mem))
            if before is None and (app, stat) in cut:
                continue
            d = v - (before or 0)
            if d < 0:          # a key that was evicted and came back: count from zero
                d = v
            out.setdefault(app, {}).setdefault(stat, {}).setdefault(k, {})[mem] = round(d / dt, 3)
        return out

    def _warnings(self, delta: dict, fill: dict) -> list[str]:
        w = []
        for name, f in fill.items():
            if f["fill"] >= FILL_WARN:
                w.append(f"map {name} ({', '.join(f['stats'])}) is {f['fill']:.0%} full "
                         f"({f['entries']:,} of {f['size']:,} entries)")
        for name, d in delta.items():
            if d <= 0:
                continue
            parts = name.split(".")
            if name.endswith(".insert_failed"):
                w.append(f"map {parts[1]} is full: {d:,} new keys not counted this interval ({name})")
            elif name.endswith(".ringbuf_full"):
                w.append(f"app {parts[1]}: {d:,} events dropped, the ring buffer was full ({name})")
            elif name.endswith(".rate_limited"):
                w.append(f"app {parts[1]}: {d:,} sends held back by their rate limit ({name})")
            elif name == "stage.tail_call_failed":
                w.append(f"{d:,} frames stopped at a failed tail call ({name})")
            elif name.endswith(".queue_dropped"):
                w.append(f"app {parts[1]}: {d:,} events dropped, its handler queue was full ({name})")
        return w
