"""What replacing a running program with another changes: ``ctl plan`` prints it, the
swap (runtime/deploy/swap.py) does it.

``diff(old, new)`` compares two compiled programs (compiler/driver.py Artifacts) by
what outlives a program (compiler/pins.py) and by names, never by position:

- apps added, removed, kept (the same app text) or changed;
- every pinned map: **kept** (same pin: the new program opens the same map, every
  value stays where it is), **created** (new), **dropped** (no longer used: unpinned
  after the swap), **migrated** (same map, another layout or size: the slots both
  programs keep are copied into the new map, runtime/deploy/fold.py), or **reset**
  (a track table or sketch of another layout or size: it starts empty);
- for a migrated statistics map, the slots kept, added and dropped (a schema change);
- the counters (kept, or migrated by name), the params (kept with their values,
  added with their defaults, dropped), and the kernel memory of the maps before and
  after (compiler/memory.py); the runtime adds the verified instructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compiler import memory

COUNTERS = "xm_counters"


@dataclass
class MapChange:
    name: str
    kind: str                     # "fused", "track", "hll", "cms", "counters", "abi"
    status: str                   # kept | created | dropped | migrated | reset
    old_pin: str | None = None
    new_pin: str | None = None
    slots_kept: list[str] = field(default_factory=list)
    slots_added: list[str] = field(default_factory=list)
    slots_dropped: list[str] = field(default_factory=list)
    approximate: list[str] = field(default_factory=list)   # kept distinct slots (runtime/deploy/fold.py)
    apps: list[str] = field(default_factory=list)       # the apps that use it (new program, else old)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


@dataclass
class Changes:
    apps_added: list[str] = field(default_factory=list)
    apps_removed: list[str] = field(default_factory=list)
    apps_kept: list[str] = field(default_factory=list)
    apps_changed: list[str] = field(default_factory=list)
    maps: list[MapChange] = field(default_factory=list)
    params_kept: list[str] = field(default_factory=list)         # "app.param"
    params_added: list[str] = field(default_factory=list)
    params_dropped: list[str] = field(default_factory=list)
    memory_before: int = 0
    memory_after: int = 0
    insns_before: int | None = None
    insns_after: int | None = None

    def by_status(self, status: str) -> list[MapChange]:
        return [m for m in self.maps if m.status == status]

    @property
    def nothing(self) -> bool:
        """The new program is the old one (same apps, same maps)."""
        return not (self.apps_added or self.apps_removed or self.apps_changed
                    or any(m.status != "kept" for m in self.maps))

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "maps"}
        out["maps"] = [m.to_json() for m in self.maps]
        return out

    def render(self) -> str:
        """The plan as an operator reads it."""
        lines = []
        for what, names in (("apps added", self.apps_added), ("apps removed", self.apps_removed),
                            ("apps changed", self.apps_changed), ("apps kept", self.apps_kept)):
            if names:
                lines.append(f"{what + ':':<15} {', '.join(names)}")
        if self.nothing:
            lines.append("nothing changes: the new program is the running one")
        for status, say in (("kept", "kept (values stay)"), ("migrated", "migrated (kept slots copied)"),
                            ("created", "created"), ("reset", "reset (another layout: starts empty)"),
                            ("dropped", "dropped")):
            ms = self.by_status(status)
            if not ms:
                continue
            lines.append(f"maps {say}: {len(ms)}")
            for m in ms:
                who = f"  [{', '.join(m.apps)}]" if m.apps else ""
                lines.append(f"  {m.new_pin or m.old_pin}{who}")
                if status == "migrated":
                    for label, slots in (("slots kept", m.slots_kept), ("slots added", m.slots_added),
                                         ("slots dropped", m.slots_dropped)):
                        if slots:
                            lines.append(f"      {label}: {', '.join(slots)}")
                    if m.approximate:
                        lines.append(f"      approximate: {', '.join(m.approximate)} (distinct sketches: copied "
                                     f"only for keys the new program has not counted yet)")
        for what, names in (("params kept", self.params_kept), ("params added", self.params_added),
                            ("params dropped", self.params_dropped)):
            if names:
                lines.append(f"{what + ':':<15} {', '.join(names)}")
        lines.append(f"kernel memory:  {memory.fmt_bytes(self.memory_before)} -> {memory.fmt_bytes(self.memory_after)}")
        if self.insns_before is not None or self.insns_after is not None:
            lines.append(f"instructions:   {_n(self.insns_before)} -> {_n(self.insns_after)} verified")
        return "\n".join(lines)


def _n(x) -> str:
    return "?" if x is None else f"{x:,}"


def _app_text(a: dict, manifest: dict) -> dict:
    """An app as the manifest has it, without what depends on the other apps (its
    position, enable bit, ring buffer share, rate limiters' indexes), with its maps'
    sizes (a statistic's ``size`` is in its map, not in the app)."""
    out = {k: v for k, v in a.items() if k not in ("index", "enable_bit", "line", "ringbuf", "rules")}
    sizes = {m["name"]: m["size"] for m in manifest["maps"]}
    out["sizes"] = sorted({(st["map"], sizes.get(st["map"])) for st in a["stats"] if st.get("map")})
    out["rules"] = [{**r, "actions": [{k: v for k, v in act.items() if k != "limiter"} for act in r["actions"]]}
                    for r in a["rules"]]
    return out


def _maps(manifest: dict) -> dict[str, dict]:
    return {m["name"]: m for m in manifest["maps"]}


def _kind(name: str, stat_maps: dict) -> tuple[str, dict | None]:
    """(kind, the statistics map it belongs to) of a pinned map's name."""
    if name == COUNTERS:
        return "counters", None
    for suffix in ("", "_b", "_hdr"):
        base = name[: len(name) - len(suffix)] if suffix and name.endswith(suffix) else name
        if base in stat_maps and (not suffix or name.endswith(suffix)):
            return stat_maps[base]["kind"], stat_maps[base]
    return "abi", None


def diff(old, new) -> Changes:
    """What replacing program ``old`` by ``new`` (Artifacts) changes."""
    om, nm = old.manifest, new.manifest
    ch = Changes()
    oa = {a["name"]: a for a in om["apps"]}
    na = {a["name"]: a for a in nm["apps"]}
    ch.apps_added = [n for n in na if n not in oa]
    ch.apps_removed = [n for n in oa if n not in na]
    for n in na:
        if n in oa:
            same = _app_text(oa[n], om) == _app_text(na[n], nm)
            (ch.apps_kept if same else ch.apps_changed).append(n)
    omaps, nmaps = _maps(om), _maps(nm)
    opins, npins = om["pins"], nm["pins"]
    for name in list(npins) + [n for n in opins if n not in npins]:
        kind, sm = _kind(name, nmaps if name in npins else omaps)
        mc = MapChange(name, kind, "", opins.get(name), npins.get(name), apps=list(sm["shared_by"]) if sm else [])
        if name not in opins:
            mc.status = "created"
        elif name not in npins:
            mc.status = "dropped"
        elif opins[name] == npins[name]:
            mc.status = "kept"
        elif kind in ("fused", "counters"):
            mc.status = "migrated"
            if kind == "fused":
                before = [s["name"] for s in omaps[name]["slots"]]
                after = [s["name"] for s in nmaps[name]["slots"]]
                mc.slots_kept = [s for s in after if s in before]
                mc.slots_added = [s for s in after if s not in before]
                mc.slots_dropped = [s for s in before if s not in after]
                mc.approximate = [s["name"] for s in nmaps[name]["slots"]
                                  if s["func"] == "distinct" and s["name"] in before]
            else:
                before, after = om["counters"]["names"], nm["counters"]["names"]
                mc.slots_kept = [f"{len([c for c in after if c in before])} counters"]
                mc.slots_added = [c for c in after if c not in before]
                mc.slots_dropped = [c for c in before if c not in after]
        else:
            mc.status = "reset"
        ch.maps.append(mc)
    op = {f"{p['app']}.{p['name']}" for p in om["params"]["slots"]}
    np_ = [f"{p['app']}.{p['name']}" for p in nm["params"]["slots"]]
    ch.params_kept = [p for p in np_ if p in op]
    ch.params_added = [p for p in np_ if p not in op]
    ch.params_dropped = sorted(op - set(np_))
    ch.memory_before = memory.estimate(old.plan).total
    ch.memory_after = memory.estimate(new.plan).total
    return ch
