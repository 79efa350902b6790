"""From raw map contents to the snapshot operators and tests read.

``RawState`` holds what an engine's maps contain, as bytes in the layouts the
manifest describes: the kernel engine fills it from BPF maps, the reference
interpreter from its own emulated maps. ``build_snapshot`` decodes it, with the
manifest as the only source of layouts and constants (but for the fixed layouts
of track bucket entries and window-tagged HyperLogLog registers):

    {"apps": {APP: {"enabled": bool, "params": {NAME: int},
                    "stats": {STAT: [{"key": {FIELD: v}, "value": {NAME: v}}, ...]
                                    or {"value": {...}} when unkeyed},
                    "windows": {STAT: {"window_ns": W,
                                       "current": {"start_ns": a, "end_ns": b},
                                       "last": {"start_ns": .., "end_ns": ..} or None,
                                       "not_kept": [NAME, ...]}}}},
     "counters": {NAME: int}, "events": [...]}

``events`` are what the caller hands over (an engine: the decoded events still
waiting in its queue); the maps hold none.

Addresses are text (IPv4 for v4-mapped addresses), numbers are integers.
A windowed statistic's ``value`` is that of the window the clock ``now`` is in,
and each of its keyed entries (or its unkeyed value) also has ``last_window``:
``{NAME: v}``, the final values of the last completed window (the one before
``now``'s). Each is empty (0, None, {}) when it had no packet. ``windows`` gives
the bounds of both windows ([start, end) in ns; ``last`` is None in the clock's
first window) and the values whose last window is not kept (count-min sketches:
they are left out of ``last_window``). A ``min`` with no value is None. A keyed
statistic lists every key whose values (current or last) are not all empty
(zero, None, no buckets): keys of other statistics that share its map, and keys
of older windows, are left out.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from .hll import estimate as hll_estimate
from .manifest import Constants, Manifest
from .records import compile_reader, decode_fields


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


def window_bounds(now: int, window_ns: int) -> dict:
    """The current and the last completed window at ``now``, as [start, end) in ns
    (``last`` None while the clock is in the first window)."""
    k = now // window_ns
    last = {"start_ns": (k - 1) * window_ns, "end_ns": k * window_ns} if k else None
    return {"window_ns": window_ns, "current": {"start_ns": k * window_ns, "end_ns": (k + 1) * window_ns},
            "last": last}


def _by_role(value_struct: dict, slot_name: str) -> tuple[dict, dict, dict | None]:
    """A slot's members by role: (its current value's, its last window's, its epoch)."""
    cur, last, epoch = {}, {}, None
    for m in value_struct["members"]:
        if m.get("slot") != slot_name:
            continue
        if m["role"] == "epoch":
            epoch = m
        elif m["role"].startswith("last_"):
            last[m["role"][5:]] = m
        else:
            cur[m["role"]] = m
    return cur, last, epoch


def _decode(slot: dict, members: dict, data: bytes):
    """One value of a slot from its members (by role) in ``data``."""
    func = slot["func"]
    if func in ("count", "sum", "max"):
        return u64(data, members[func]["offset"])
    if func == "min":
        v = u64(data, members["min"]["offset"])
        return None if v == 0 else (~v) & 0xFFFFFFFFFFFFFFFF
    if func == "hist":
        m = members["hist"]
        return hist_dict(struct.unpack_from(f"<{m['count']}Q", data, m["offset"]))
    if func == "distinct":
        return _estimate(slot, u64(data, members["hll_z"]["offset"]), u64(data, members["hll_zeros"]["offset"]))
    raise AssertionError(func)


def _estimate(slot: dict, z: int, zeros: int) -> int:
    hll = slot["hll"]
    return 0 if z == 0 else hll_estimate(z, zeros, hll["registers"], hll["am2"], hll["log2m_fp"])


def slot_reader(slot: dict, value_struct: dict, now: int):
    """``read(data) -> (current, last)``: the values of one slot of a fused map's
    value at ``now`` (its members looked up once, for every entry): an unwindowed
    slot's value and None; a windowed slot's value in the window of ``now`` and in
    the window before (the slot holds the window of its epoch E and keeps the
    final value of E - 1; seen from the window E + 1 its value is the last one).
    Each is empty when the slot holds no packet of that window."""
    cur, last, epoch = _by_role(value_struct, slot["name"])
    w = slot["window_ns"]
    if w is None:
        return lambda data: (_decode(slot, cur, data), None)
    at, want, empty = epoch["offset"], epoch_of(now, w), _empty(slot)

    def read(data: bytes):
        stored = u64(data, at)
        if stored == want:
            return _decode(slot, cur, data), _decode(slot, last, data)
        if stored == want - 1:
            return empty, _decode(slot, cur, data)
        return empty, empty
    return read


def _empty(slot):
    if slot["func"] == "min":
        return None
    if slot["func"] == "hist":
        return {}
    return 0


def key_text(key: dict) -> str:
    """A keyed entry's key as one text, e.g. ``ip.dst=198.18.0.7`` (rates are keyed by it)."""
    return ",".join(f"{k}={v}" for k, v in key.items())


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

def build_snapshot(manifest: Manifest | dict, raw: RawState, now: int, events=(), keys_limit: int | None = None
                   ) -> dict:
    """The snapshot of ``raw`` on the clock ``now``; ``events`` are listed as given.

    ``keys_limit``: a keyed statistic whose map holds more entries lists only its
    ``keys_limit`` largest keys (by its first member, in the current window), and
    the app's ``keys_listed`` says so: {STAT: {"listed", "keys" (the statistic's
    keys in all), "by"}}. A live reading of a million-entry map decodes those
    only (``Entries`` columns pick them); None lists every key (replay)."""
    man = Manifest.of(manifest)
    apps_out = {app.name: build_app_snapshot(man, raw, app.name, now, keys_limit=keys_limit) for app in man.apps}
    counters = {name: raw.counters[i] if i < len(raw.counters) else 0 for i, name in enumerate(man.counter_names)}
    return {"apps": apps_out, "counters": counters, "events": list(events)}


def build_app_snapshot(manifest: Manifest | dict, raw: RawState, app: str, now: int,
                       stats: list[str] | None = None, keys_limit: int | None = None) -> dict:
    """One app's part of the snapshot (``{"enabled", "params", "stats", "windows"}``,
    and ``keys_listed``), with only the statistics named in ``stats`` (default:
    all); ``raw`` needs only the maps ``app_maps`` names (and the params and
    control blocks)."""
    man = Manifest.of(manifest)
    a = man.app(app)
    layout = _app_layout(man, app)
    if stats is not None:
        layout = dict(layout, stats=[st for st in layout["stats"] if st["name"] in stats])
    maps = {m["name"]: m for m in man.raw["maps"]}
    params = {p.name: raw.params[p.index] if p.index < len(raw.params) else p.default for p in a.params}
    if a.enable_bit >= 0:
        until = raw.ctl_until[a.enable_bit] if a.enable_bit < len(raw.ctl_until) else 0
        enabled = until > now
    else:
        enabled = True
    out, limited = {}, {}
    for st in layout["stats"]:
        listed: list = []
        out[st["name"]] = _stat(st, maps, raw, now, man.constants, keys_limit, listed)
        if listed:
            shown, counted, by = listed[0]
            limited[st["name"]] = {"listed": len(out[st["name"]]), "keys": counted, "by": by}
    snap = {"enabled": enabled, "params": params, "stats": out, "windows": _windows(layout, maps, now)}
    if limited:
        snap["keys_listed"] = limited
    return snap


def _app_layout(man: Manifest, app: str) -> dict:
    man.app(app)                          # KeyError for an unknown app
    return next(a for a in man.raw["apps"] if a["name"] == app)


def app_maps(manifest: Manifest | dict, app: str, stats: list[str] | None = None) -> list[str]:
    """The state maps whose bytes ``build_app_snapshot`` reads for these statistics."""
    man = Manifest.of(manifest)
    maps = {m["name"]: m for m in man.raw["maps"]}
    names: dict[str, None] = {}
    for st in _app_layout(man, app)["stats"]:
        if stats is not None and st["name"] not in stats:
            continue
        for name in [st["map"]] if st["kind"] == "track" else [mem["map"] for mem in st["members"]]:
            names[name] = None
            for companion in ("buckets_map", "header_map"):
                if companion in maps[name]:
                    names[maps[name][companion]] = None
    return list(names)


def _stat(st: dict, maps: dict, raw: RawState, now: int, const: Constants, keys_limit: int | None = None,
          listed: list | None = None):
    if listed is None:
        listed = []
    if st["kind"] == "track":
        m = maps[st["map"]]
        return _track(m, raw, now, const.track_buckets)
    out_keyed = []
    unkeyed, unkeyed_last = {}, {}
    windowed = _window_of(st, maps) is not None     # one window for all its members
    by_map: dict[str, list[tuple[str, dict]]] = {}
    for mem in st["members"]:
        by_map.setdefault(mem["map"], []).append((mem["name"], mem["slot"]))
    for mname, members in by_map.items():
        m = maps[mname]
        slots = {s["name"]: s for s in m["slots"]}
        if m["kind"] == "hll":
            for member, sname in members:
                unkeyed[member], last = _hll_values(m, slots[sname], raw, now)
                if windowed:
                    unkeyed_last[member] = last
            continue
        if m["kind"] == "cms":
            for member, sname in members:
                unkeyed[member] = _cms_summary(m, slots[sname], raw, now, const)   # its last window is not kept
            continue
        entries = raw.maps.get(mname, [])
        readers = [(member, slot_reader(slots[sname], m["value"], now)) for member, sname in members]
        if not m["key_fields"]:
            data = entries[0] if entries else bytes(m["value"]["size"])
            for member, read in readers:
                unkeyed[member], last = read(data)
                if windowed:
                    unkeyed_last[member] = last
            continue
        keyed = {}
        if keys_limit is not None and len(entries) > keys_limit:
            entries, counted = _top_entries(entries, m, members, slots, now, keys_limit)
            listed.append((len(entries), counted, members[0][0]))
        for kb, vb in entries:
            both = {member: read(vb) for member, read in readers}
            value = {member: v for member, (v, _) in both.items()}
            last = {member: v for member, (_, v) in both.items()}
            if all(v in (0, None, {}) for v in (*value.values(), *(last.values() if windowed else ()))):
                continue        # a key of another stat sharing the map, or of no recent window
            key = decode_fields(m["key"], kb)
            entry = {"key": {f: key[f] for f in st["key"]}, "value": value}
            if windowed:
                entry["last_window"] = last
            keyed[kb] = entry
        out_keyed.extend(keyed[k] for k in sorted(keyed))
    if unkeyed and not out_keyed:
        return {"value": unkeyed, "last_window": unkeyed_last} if windowed else {"value": unkeyed}
    return out_keyed


def _top_entries(entries, m: dict, members: list, slots: dict, now: int, limit: int):
    """The ``limit`` entries of largest first member (now), and the number of keys
    the statistic has (entries with any of its members not empty, now or in the
    last window). Fast for u64 members (count, sum, max) of ``Entries``."""
    import heapq

    def column(sname, role_prefix=""):
        cur, last, epoch = _by_role(m["value"], sname)
        func = slots[sname]["func"]
        mem = (last if role_prefix else cur).get(func)
        if func not in ("count", "sum", "max") or mem is None or not hasattr(entries, "u64_column"):
            return None
        col = entries.u64_column(mem["offset"])
        w = slots[sname]["window_ns"]
        if w is None:
            return col
        want = epoch_of(now, w) - (1 if role_prefix else 0)
        ep = entries.u64_column(epoch["offset"])
        if role_prefix:      # the last window: kept in _last while the slot is in E, or the value when in E - 1
            cur_col = entries.u64_column(cur[func]["offset"])
            return [lv if e == want + 1 else (cv if e == want else 0) for lv, cv, e in zip(col, cur_col, ep)]
        return [v if e == want else 0 for v, e in zip(col, ep)]

    cols = [column(sname) for _, sname in members]
    windowed = any(slots[sname]["window_ns"] is not None for _, sname in members)
    if windowed:
        cols += [column(sname, "last") for _, sname in members]
    if any(c is None for c in cols):                  # another kind of slot: decode each entry to rank it
        readers = [slot_reader(slots[sname], m["value"], now) for _, sname in members]
        ranked = []
        for i, (kb, vb) in enumerate(entries):
            vals = [r(vb) for r in readers]
            if any(v not in (0, None, {}) for pair in vals for v in pair):
                first = vals[0][0]
                ranked.append((first if isinstance(first, int) else 0, i))
        top = heapq.nlargest(limit, ranked)
        return [entries[i] for _, i in sorted(top, key=lambda t: t[1])], len(ranked)
    rank = cols[0]
    counted = len(rank) - rank.count(0) if len(cols) == 1 else sum(map(any, zip(*cols)))
    best = heapq.nlargest(limit, range(len(rank)), key=rank.__getitem__)
    return [entries[i] for i in sorted(best)], counted


def _window_of(st: dict, maps: dict) -> int | None:
    """The window of an aggregate statistic (one for all its members), or None."""
    for mem in st["members"]:
        return next(s for s in maps[mem["map"]]["slots"] if s["name"] == mem["slot"])["window_ns"]
    return None


def _windows(layout: dict, maps: dict, now: int) -> dict:
    """Per windowed statistic of an app: its window, the bounds of the current and
    the last completed window at ``now``, and the members whose last window is
    not kept (count-min sketches)."""
    out = {}
    for st in layout["stats"]:
        w = _window_of(st, maps) if st["kind"] == "aggregate" else None
        if w is not None:
            out[st["name"]] = {**window_bounds(now, w),
                               "not_kept": [mem["name"] for mem in st["members"] if maps[mem["map"]]["kind"] == "cms"]}
    return out


def _offsets(st: dict) -> dict[str, int]:
    return {m["name"]: m["offset"] for m in st["members"]}


def _hll_values(m, slot, raw, now):
    """(current, last) estimates of an unkeyed distinct (last None when unwindowed)."""
    hdr = raw.maps.get(m["header_map"], [bytes(m["header"]["size"])])[0]
    at = {mb["role"]: u64(hdr, mb["offset"]) for mb in m["header"]["members"] if mb["role"] != "pad"}
    w = slot["window_ns"]
    if not w:
        return (_estimate(slot, at["hll_z"], at["hll_zeros"]) if at["epoch"] == 1 else 0), None
    want = epoch_of(now, w)
    if at["epoch"] == want:
        return _estimate(slot, at["hll_z"], at["hll_zeros"]), _estimate(slot, at["last_hll_z"], at["last_hll_zeros"])
    if at["epoch"] == want - 1:
        return 0, _estimate(slot, at["hll_z"], at["hll_zeros"])
    return 0, 0


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
    live = []
    for kb, vb in raw.maps.get(m["name"], []):
        opened, bucket = u64(vb, at["opened"]), u64(vb, at["bucket"])
        if b - bucket < nb:
            live.append((opened, bytes(kb)))
    live.sort()                    # oldest first; entries opened at once in the order of their key's bytes
    key_of = _key_reader(m["key"])
    entries = [{"key": key_of(kb), "value": {"opened": opened}} for opened, kb in live]
    size = 0
    for vb in raw.maps.get(m["buckets_map"], []):
        epoch, count = struct.unpack_from("<Qq", vb, 0)
        if epoch <= b and b - epoch < nb:
            size += count
    return {"size": max(size, 0), "open": entries}


_KEY_READERS: dict[str, object] = {}


def _key_reader(st: dict):
    """``decode_fields(st, ·)`` compiled once per key layout (records.compile_reader):
    a track table under a flood holds tens of thousands of keys, decoded at each summary."""
    sig = json.dumps(st, sort_keys=True)
    fn = _KEY_READERS.get(sig)
    if fn is None:
        fn = _KEY_READERS[sig] = compile_reader(st)
    return fn
