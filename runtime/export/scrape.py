"""What one Prometheus scrape reads from a program's maps, and what it is told to export.

``ExportSettings(keys=100, stats={"APP.STAT": StatExport(keys, by, export)})``: how many
keys a keyed statistic exports (its top N, plus an ``other`` series), by which member
they rank, or not to export it at all (``ExportSettings.of_config``: the deployment
config's ``metrics``, read and checked by runtime/control/config.py).

``scrape(manifest, maps, now, settings)`` reads what the exporter shows, and nothing
else, through a runtime.dataplane.maps.MapAccess (a loaded program's or the reference
interpreter's):

- a keyed statistic: its map chunk by chunk (``maps.entry_chunks``: one BPF_MAP_LOOKUP_BATCH
  call each), folded into runtime/export/topkeys.py's ``TopKeys``: its N largest keys and
  the aggregate of the rest, in memory for one chunk and N keys however large the map; a
  map fused for several statistics is read once for all of them;
- every other statistic (unkeyed values, distinct, count-min, a track's size): the small
  maps they live in, decoded by runtime/abi/snapshot.py (a track's size is kept in its
  buckets: its open entries are not read);
- the global counters, params and enable state.

The result is the snapshot's shape, but a keyed statistic is ``{"rows": [...], "other":
{...} or None, "keys": n}``:

    {"apps": {APP: {"enabled", "params", "stats": {STAT: data}}}, "counters": {NAME: int},
     "wall_offset_ns": Unix time - the program's clock (0 for a replay build: capture time)}

A statistic whose export is off is left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from runtime.abi.manifest import Manifest
from runtime.abi.snapshot import app_maps, build_app_snapshot

from .topkeys import TopKeys

DEFAULT_KEYS = 100


@dataclass(frozen=True)
class StatExport:
    keys: int | None = None          # None: the settings' default
    by: str | None = None            # the member keys rank by (None: the first)
    export: bool = True


@dataclass(frozen=True)
class ExportSettings:
    keys: int = DEFAULT_KEYS
    stats: dict = field(default_factory=dict)        # "APP.STAT" -> StatExport

    def of(self, app: str, stat: str) -> StatExport:
        s = self.stats.get(f"{app}.{stat}", StatExport())
        return s if s.keys is not None else StatExport(self.keys, s.by, s.export)

    def exported(self, app: str, stat: str) -> bool:
        return self.of(app, stat).export

    @classmethod
    def of_config(cls, d: dict | None) -> "ExportSettings":
        """From the deployment config's ``metrics`` (runtime/control/config.py: checked there
        against the program): {"keys": N or None, "stats": {APP.STAT: {keys, by, export}}}."""
        d = d or {}
        return cls(keys=d.get("keys") or DEFAULT_KEYS,
                   stats={n: StatExport(s.get("keys"), s.get("by"), s.get("export", True))
                          for n, s in d.get("stats", {}).items()})


def keyed(st: dict) -> bool:
    return st["kind"] != "track" and bool(st.get("key"))


def scrape(manifest, maps, now: int, settings: ExportSettings = ExportSettings()) -> dict:
    man = Manifest.of(manifest)
    layouts = {m["name"]: m for m in man.raw["maps"]}
    apps, tops = {}, {}                     # tops: map name -> [(app, stat, TopKeys)]
    for a in man.raw["apps"]:
        app = a["name"]
        small = [st["name"] for st in a["stats"] if settings.exported(app, st["name"]) and not keyed(st)]
        need = [n for n in app_maps(man, app, small) if layouts.get(n, {}).get("kind") != "track"]   # a track: its buckets
        raw = maps.raw_state(maps=need, counters=False)
        snap = build_app_snapshot(man, raw, app, now, stats=small)
        apps[app] = {"enabled": snap["enabled"], "params": snap["params"], "stats": snap["stats"]}
        for st in a["stats"]:
            if not keyed(st) or not settings.exported(app, st["name"]):
                continue
            how = settings.of(app, st["name"])
            # a keyed statistic's members are fused into the one map of its key (compiler/passes/merge_stats.py)
            tops.setdefault(st["map"], []).append((app, st["name"], TopKeys(st, layouts[st["map"]], now, how.keys,
                                                                            how.by)))
    for name, readers in tops.items():
        for chunk in maps.entry_chunks(name):
            for _, _, tk in readers:
                tk.add(chunk)
        for app, stat, tk in readers:
            apps[app]["stats"][stat] = tk.result()
    counters = dict(zip(man.counter_names, maps.counters()))
    # the program's clock (monotonic, or a capture's: Unix time already) to Unix time, for the
    # statistics that are times (a min or max of pkt.ts)
    wall = 0 if man.clock == "capture" else time.time_ns() - now
    return {"apps": apps, "counters": counters, "wall_offset_ns": wall}

