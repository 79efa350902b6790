"""Share and fuse statistics.

- Identical statistics -- same aggregate, arguments, key, guard (the app's T1
  select and the stat's where), window and options -- become ONE slot used by
  every app that wrote it. An on-demand app's statistic counts only while the
  app is enabled, so it is identical to another on-demand app's only if that app
  is itself; but where an always-on app keeps the same statistic, the on-demand
  app reads that slot: it is computed anyway, and holds what the app would have
  counted had it been on all along (a detector enabled mid-window sees the whole
  window, not the part since its enable).
- Statistics keyed by the same fields (in any order) and with the same
  full-map policy live in ONE hash map whose value holds all their slots,
  each updated under its own guard and window: one lookup per packet per key.
  Except that the statistics rules read (in the kernel, at the packet) are kept
  apart from the others where that lets the others keep a value per CPU
  (compiler/percpu.py): a flood's SYN count beside the traffic accounting of the
  same destinations would make every frame's accounting an atomic add on a line
  all cores share. The map of the read ones is named for it ("... read by rules"),
  whether or not other statistics share the key, so that adding one keeps its name.
- Unkeyed counters share one single-entry array; unkeyed sketches (distinct,
  cms) and track tables get maps of their own (shared when identical).

Maps and slots are named after what they are (compiler/identity.py), and the
slots of a map are laid out in name order, so names and value layouts do not
change when unrelated apps are added, removed or reordered.
"""

from __future__ import annotations

from dsl.fields import Field

from .. import identity as I
from .. import ir, percpu

SKETCH_FUNCS = ("distinct", "cms")


def _gate(ps, always: frozenset, ident: tuple) -> str | None:
    """The app whose enable bit a statistic's slot (``ident``, without its gate) counts
    under: None when the app is always on, or when an always-on app keeps the same slot."""
    if ps.mode != "on_demand" or ident in always:
        return None
    return ps.app


def _always_on(prog: ir.ProgramIR) -> frozenset:
    """The slots (and tracks) always-on apps keep, without their gate."""
    out = set()
    for ps in prog.pending_stats:
        if ps.mode == "on_demand":
            continue
        key = _key_fields(ps.stat)
        if ps.stat.kind == "track":
            out.add(_track_key(ps, key))
        else:
            out.update(_ungated_key(ps, agg, key) for agg in ps.stat.aggregates)
    return frozenset(out)


def run(prog: ir.ProgramIR) -> ir.ProgramIR:
    groups: dict = {}          # map group key -> dict(kind, key, size, on_full, slots: {identity: [slot fields, uses]})
    order: list = []
    track_groups: dict = {}
    spec_order: list = []      # (app, stat, member) as written: how a stat's values are listed
    always = _always_on(prog)
    read_slots = _slots_read_by_rules(prog, always)
    for ps in prog.pending_stats:
        st = ps.stat
        prog.stat_keys[(ps.app, st.name)] = tuple(k.field.name for k in st.key)
        key = _key_fields(st)
        if st.kind == "track":
            tk = _track_key(ps, key)
            ident = tk + (_gate(ps, always, tk),)
            g = track_groups.get(ident)
            use = ir.Use(ps.app, st.name, "", st.span)
            if g is None:
                g = {"key": key, "size": st.size, "uses": [use], "ps": ps}
                track_groups[ident] = g
                order.append(("track", ident))
            else:
                g["size"] = max(g["size"], st.size)
                g["uses"].append(use)
            continue
        for agg in st.aggregates:
            sketch = not key and agg.func in SKETCH_FUNCS
            slot_ident = _slot_key(ps, agg, key, always)
            if sketch:
                gkey = ("sketch", slot_ident)
                kind = "hll" if agg.func == "distinct" else "cms"
            else:
                gkey = ("fused", tuple(f.name for f in key), st.on_full if key else "count",
                        slot_ident in read_slots)
                kind = "fused"
            g = groups.get(gkey)
            if g is None:
                g = {"kind": kind, "key": key, "size": st.size, "on_full": st.on_full if key else "count",
                     "slots": {}}
                groups[gkey] = g
                order.append(("agg", gkey))
            g["size"] = max(g["size"], st.size)
            use = ir.Use(ps.app, st.name, agg.name, agg.span)
            spec_order.append((ps.app, st.name, agg.name))
            slot = g["slots"].get(slot_ident)
            if slot is None:
                g["slots"][slot_ident] = {"func": agg.func, "args": tuple(a.field for a in agg.args),
                                          "guard": ps.guard, "window": st.window_ns,
                                          "options": agg.options, "uses": [use], "gate": slot_ident[-1]}
            else:
                slot["uses"].append(use)

    _join_unless_per_cpu(groups, order)
    pred_text = I.pred_texts(prog.preds)

    def slot_identity(sd, key) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sd["options"])
        return (f"{sd['func']}({I.fields_text(sd['args'])}) key({I.fields_text(key)}) "
                f"where {pred_text(sd['guard'])} window {sd['window'] or '-'} "
                f"options({opts}) gate {sd['gate'] or '-'}")

    map_ident: dict = {}
    slot_ident: dict = {}
    for kind, gk in order:
        if kind == "track":
            ps = track_groups[gk]["ps"]
            map_ident[gk] = (f"track key({I.fields_text(track_groups[gk]['key'])}) "
                             f"open {pred_text(ps.open_guard)} close {pred_text(ps.close_guard)} "
                             f"expire {ps.stat.expire_ns} gate {gk[-1] or '-'}")
            continue
        g = groups[gk]
        for sk, sd in g["slots"].items():
            slot_ident[(gk, sk)] = slot_identity(sd, g["key"])
        if g["kind"] == "fused":
            # the statistics rules read, apart (named so whether or not others share the key);
            # joined again with the others: the one map of the key
            read = gk[3] and not g.get("joined")
            map_ident[gk] = (f"fused key({I.fields_text(g['key'])}) full {g['on_full']}"
                             + (" read by rules" if read else ""))
        else:
            map_ident[gk] = f"{g['kind']} " + next(iter(slot_ident[(gk, sk)] for sk in g["slots"]))
    map_names = I.assign("m", list(map_ident.values()))
    slot_names = I.assign("s", list(slot_ident.values()))

    maps: list[ir.StatMap] = []
    stat_slots: dict = {}
    track_maps: dict = {}
    for kind, gk in order:
        name = map_names[map_ident[gk]]
        if kind == "track":
            g = track_groups[gk]
            ps = g["ps"]
            t = ir.TrackIR(ps.open_guard, ps.close_guard, ps.stat.expire_ns, ps.app, ps.stat.name)
            maps.append(ir.StatMap(name, "track", g["key"], (), g["size"], "lru", tuple(g["uses"]), t,
                                   map_ident[gk]))
            for u in g["uses"]:
                track_maps[(u.app, u.stat)] = name
            continue
        g = groups[gk]
        slots = []
        uses: list[ir.Use] = []
        # Slots sharing a window are kept together (they share one epoch), by name.
        named = sorted(((slot_ident[(gk, sk)], sd) for sk, sd in g["slots"].items()),
                       key=lambda t: (t[1]["window"] or 0, slot_names[t[0]]))
        for ident, sd in named:
            sname = slot_names[ident]
            slots.append(ir.Slot(sname, sd["func"], sd["args"], sd["guard"], sd["window"], sd["options"],
                                 tuple(sd["uses"]), ident))
            for u in sd["uses"]:
                stat_slots[(u.app, u.stat, u.member)] = (name, sname)
                uses.append(u)
        maps.append(ir.StatMap(name, g["kind"], g["key"], tuple(slots), g["size"] if g["key"] else 1,
                               g["on_full"], tuple(uses), identity=map_ident[gk]))
    prog.maps = maps
    prog.stat_slots = {k: stat_slots[k] for k in spec_order}
    prog.track_maps = track_maps
    prog.pending_stats = []
    return prog


def _key_fields(st) -> tuple[Field, ...]:
    return tuple(k.field for k in sorted(st.key, key=lambda k: k.field.name))


def _ungated_key(ps, agg, key) -> tuple:
    return (agg.func, tuple(a.field.name for a in agg.args), tuple(f.name for f in key),
            ps.guard, ps.stat.window_ns, agg.options)


def _track_key(ps, key) -> tuple:
    return ("track", tuple(f.name for f in key), ps.open_guard, ps.close_guard, ps.stat.expire_ns)


def _slot_key(ps, agg, key, always: frozenset) -> tuple:
    """What makes two aggregates one slot (compiler/identity.py names it)."""
    k = _ungated_key(ps, agg, key)
    return k + (_gate(ps, always, k),)


def _slots_read_by_rules(prog: ir.ProgramIR, always: frozenset) -> set[tuple]:
    """The slots some rule reads through one of the statistics that use them: every
    use of such a slot is in the map of what rules read (a slot is kept once)."""
    read = percpu.stats_read_by_rules(prog)
    return {_slot_key(ps, agg, _key_fields(ps.stat), always) for ps in prog.pending_stats
            if ps.stat.kind != "track" and (ps.app, ps.stat.name) in read for agg in ps.stat.aggregates}


def _join_unless_per_cpu(groups: dict, order: list) -> None:
    """The statistics of one key that rules read and those they do not are two groups;
    join them again (into the first) where the second could not be per-CPU anyway: two
    maps would then cost a second lookup of the key and save nothing."""
    for gk in [k for kind, k in order if kind == "agg" and k[0] == "fused" and k[3]]:
        other = gk[:3] + (False,)
        if other not in groups:
            continue
        g = groups[other]
        slots = tuple(ir.Slot(f"s{i}", sd["func"], sd["args"], sd["guard"], sd["window"], sd["options"], ())
                      for i, sd in enumerate(g["slots"].values()))
        probe = ir.StatMap("probe", "fused", g["key"], slots, g["size"] if g["key"] else 1, g["on_full"], ())
        if percpu.combinable(probe, probe.size):
            continue
        first, second = sorted((gk, other), key=lambda k: order.index(("agg", k)))
        groups[first]["size"] = max(groups[first]["size"], groups[second]["size"])
        for sk, sd in groups.pop(second)["slots"].items():     # (no slot is in both: _slots_read_by_rules)
            groups[first]["slots"][sk] = sd
        groups[first]["joined"] = True
        order.remove(("agg", second))


def key_of(fields: tuple[Field, ...]) -> str:
    return ", ".join(f.name for f in fields)
