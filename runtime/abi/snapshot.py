"""From raw map contents to the snapshot operators and tests read.

``RawState`` holds what an engine's maps contain, as bytes in the layouts the
manifest describes: the kernel engine fills it from BPF maps, the reference
interpreter from its own emulated maps. ``build_snapshot`` decodes it, with the
manifest as the only source of layouts and constants (but for the fixed layouts
of track bucket entries and window-tagged HyperLogLog registers):

    {"apps": {APP: {"enabled": bool, "params": {NAME: int},
                    "stats": {STAT: [{"key": {FIELD: v}, "value": {NAME: v}}, ...]
                                    or {"value": {...}} when unkeyed}}},
     "counters": {NAME: int}, "events": [...]}

``events`` are what the caller hands over (an engine: the decoded events still
waiting in its queue); the maps hold none.

Addresses are text (IPv4 for v4-mapped addresses), numbers are integers.
Windowed values are those of the window the clock ``now`` is in (0 when the
stored window is older). A ``min`` with no value is None. A keyed statistic
lists every key whose values are not all empty (zero, None, no buckets): keys
of other statistics that share its map, and keys of an expired window, are
left out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .hll import estimate as hll_estimate
from .manifest import Constants, Manifest
from .records import decode_fields


@dataclass
class RawState:
    """Map contents as bytes. ``maps[name]`` is a list of (key, value) byte pairs
    for hash maps, or of values by index for arrays."""
    maps: dict[str, list] = field(default_factory=dict)
    counters: list[int] = field(default_factory=list)
    params: list[int] = field(default_factory=list)
    ctl_mask: int = 0
    ctl_until: list[int] = field(default_factory=list)


# ---- slot values ----------------------------------------------------------------

def u64(data: bytes, off: int) -> int:
    return struct.unpack_from("<Q", data, off)[0]


def epoch_of(now: int, window_ns: int | None) -> int | None:
    return None if window_ns is None else now // window_ns + 1


def slot_value(slot: dict, value_struct: dict, data: bytes, now: int):
    """The value of one slot of a fused map's value."""
    members = {m["name"]: m for m in value_struct["members"]}
    name = slot["name"]
    w = slot["window_ns"]
    if w is not None:
        epoch = next(m for m in value_struct["members"] if m["role"] == "epoch" and m.get("slot") == name)
        if u64(data, epoch["offset"]) != epoch_of(now, w):
            return _empty(slot)
    func = slot["func"]
    if func in ("count", "sum", "max"):
        return u64(data, members[name]["offset"])
    if func == "min":
        v = u64(data, members[name]["offset"])
        return None if v == 0 else (~v) & 0xFFFFFFFFFFFFFFFF
    if func == "hist":
        m = members[name]
        counts = struct.unpack_from(f"<{m['count']}Q", data, m["offset"])
        return hist_dict(counts)
    if func == "distinct":
        hll = slot["hll"]
        z = u64(data, members[f"{name}_z"]["offset"])
        zeros = u64(data, members[f"{name}_zeros"]["offset"])
        if z == 0:
            return 0
        return hll_estimate(z, zeros, hll["registers"], hll["am2"], hll["log2m_fp"])
    raise AssertionError(func)


def _empty(slot):
    if slot["func"] == "min":
        return None
    if slot["func"] == "hist":
        return {}
    return 0


def hist_dict(counts) -> dict:
    """log2 buckets as {"lo-hi": count} for the non-empty ones."""
    out = {}
    for b, c in enumerate(counts):
        if not c:
            continue
        lo, hi = (0, 0) if b == 0 else (1 << (b - 1), (1 << b) - 1)
        out[f"{lo}-{hi}"] = c
    return out


# ---- the snapshot -------------------------------------------------------------------

def build_snapshot(manifest: Manifest | dict, raw: RawState, now: int, events=()) -> dict:
    """The snapshot of ``raw`` on the clock ``now``; ``events`` are listed as given."""
    man = Manifest.of(manifest)
    maps = {m["name"]: m for m in man.raw["maps"]}
    apps_out = {}
    for app, layout in zip(man.apps, man.raw["apps"]):
        params = {p.name: raw.params[p.index] if p.index < len(raw.params) else p.default for p in app.params}
        if app.enable_bit >= 0:
            until = raw.ctl_until[app.enable_bit] if app.enable_bit < len(raw.ctl_until) else 0
            enabled = until > now
        else:
            enabled = True
        stats = {}
        for st in layout["stats"]:
            stats[st["name"]] = _stat(st, maps, raw, now, man.constants)
        apps_out[app.name] = {"enabled": enabled, "params": params, "stats": stats}
    counters = {name: raw.counters[i] if i < len(raw.counters) else 0 for i, name in enumerate(man.counter_names)}
    return {"apps": apps_out, "counters": counters, "events": list(events)}


def _stat(st: dict, maps: dict, raw: RawState, now: int, const: Constants):
    if st["kind"] == "track":
        m = maps[st["map"]]
        return _track(m, raw, now, const.track_buckets)
    out_keyed = []
    unkeyed = {}
    by_map: dict[str, list[tuple[str, dict]]] = {}
    for mem in st["members"]:
        by_map.setdefault(mem["map"], []).append((mem["name"], mem["slot"]))
    for mname, members in by_map.items():
        m = maps[mname]
        slots = {s["name"]: s for s in m["slots"]}
        if m["kind"] == "hll":
            for member, sname in members:
                unkeyed[member] = _hll_value(m, slots[sname], raw, now)
            continue
        if m["kind"] == "cms":
            for member, sname in members:
                unkeyed[member] = _cms_summary(m, slots[sname], raw, now, const)
            continue
        entries = raw.maps.get(mname, [])
        if not m["key_fields"]:
            data = entries[0] if entries else bytes(m["value"]["size"])
            for member, sname in members:
                unkeyed[member] = slot_value(slots[sname], m["value"], data, now)
            continue
        keyed = {}
        for kb, vb in entries:
            value = {member: slot_value(slots[sname], m["value"], vb, now) for member, sname in members}
            if all(v in (0, None, {}) for v in value.values()):
                continue        # a key of another stat sharing the map, or of an expired window
            key = decode_fields(m["key"], kb)
            keyed[kb] = {"key": {f: key[f] for f in st["key"]}, "value": value}
        out_keyed.extend(keyed[k] for k in sorted(keyed))
    if unkeyed and not out_keyed:
        return {"value": unkeyed}
    return out_keyed


def _offsets(st: dict) -> dict[str, int]:
    return {m["name"]: m["offset"] for m in st["members"]}


def _hll_value(m, slot, raw, now):
    at = _offsets(m["header"])
    hdr = raw.maps.get(m["header_map"], [bytes(m["header"]["size"])])[0]
    w = slot["window_ns"]
    want = epoch_of(now, w) if w else 1
    if u64(hdr, at["epoch"]) != want:
        return 0
    hll = slot["hll"]
    return hll_estimate(u64(hdr, at["z"]), u64(hdr, at["zeros"]), hll["registers"], hll["am2"], hll["log2m_fp"])


def hll_registers(m: dict, slot: dict, raw: RawState, now: int) -> list[int]:
    """The current window's registers of an unkeyed distinct (for tests)."""
    w = slot["window_ns"]
    want = epoch_of(now, w) if w else 1
    out = []
    for v in raw.maps.get(m["name"], []):
        x = u64(v, 0)
        out.append(x & 0xFF if (x >> 8) == want else 0)
    return out


def _cms_summary(m, slot, raw, now, const):
    """A cell is the window's tag (the epoch's low cms_tag_bits bits) above the count."""
    width = slot["options"]["width"]
    w = slot["window_ns"]
    count_bits = const.cms_count_bits
    count_mask = (1 << count_bits) - 1
    tag = ((epoch_of(now, w) & ((1 << const.cms_tag_bits) - 1)) << count_bits) if w else 0
    row0 = raw.maps.get(m["name"], [])[:width]
    total = 0
    for v in row0:
        x = u64(v, 0)
        if (x & ~count_mask) == tag:
            total += x & count_mask
    return {"total": total, "width": width, "depth": slot["options"]["depth"]}


def _track(m, raw, now, nb: int):
    """Open entries and size() of a track table with ``nb`` time buckets."""
    at = _offsets(m["value"])
    bucket_ns = m["bucket_ns"]
    b = now // bucket_ns
    entries = []
    for kb, vb in raw.maps.get(m["name"], []):
        opened, bucket = u64(vb, at["opened"]), u64(vb, at["bucket"])
        if b - bucket < nb:
            entries.append({"key": decode_fields(m["key"], kb), "value": {"opened": opened}})
    size = 0
    for vb in raw.maps.get(m["buckets_map"], []):
        epoch, count = struct.unpack_from("<Qq", vb, 0)
        if epoch <= b and b - epoch < nb:
            size += count
    entries.sort(key=lambda e: (e["value"]["opened"], sorted(e["key"].items())))
    return {"size": max(size, 0), "open": entries}
