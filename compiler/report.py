"""The merge report: what merging the apps into one program shared, and what it saved.

Counts "before" are what the same apps would cost as separate programs (each
parsing its own layers, evaluating its own predicates, keeping its own maps);
"after" is the merged program.
"""

from __future__ import annotations


from . import ir
from .parse_outcomes import decoders_for
from .passes.intern import Interner


def _app_layers(prog: ir.ProgramIR) -> dict[str, set[str]]:
    """Layers each app needs on its own (its predicates, keys, arguments, events)."""
    from .passes.layers import needed_layers
    out = {}
    from dataclasses import replace
    for a in prog.apps:
        sub = ir.ProgramIR(apps=[a])
        sub.preds = [n for n in prog.preds if a.name in n.users]
        sub.maps = [replace(m, slots=tuple(s for s in m.slots if any(u.app == a.name for u in s.uses)))
                    for m in prog.maps if any(u.app == a.name for u in m.uses)]
        out[a.name] = set(decoders_for(needed_layers(sub)))
    return out


def _preds_before(model_prog) -> int:
    """Distinct predicates if every app were compiled alone (interned per app)."""
    from .lower import lower
    total = 0
    lowered = lower(model_prog)
    for a in lowered.apps:
        it = Interner()
        if a.select is not None:
            it.intern(a.select, a.name)
        for r in a.rules:
            it.intern(r.cond, a.name)
        for ps in lowered.pending_stats:
            if ps.app != a.name:
                continue
            it.intern(ps.guard, a.name)
            if ps.open_guard is not None:
                it.intern(ps.open_guard, a.name)
                it.intern(ps.close_guard, a.name)
        total += len(it.nodes)
    return total


def build(prog: ir.ProgramIR, model_prog, load_info=None) -> dict:
    layers = _app_layers(prog)
    decoded = decoders_for(prog.layers)
    parse_layers = [l for l in ("eth", "vlan", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6", "dns")
                    if l in decoded]
    shared_layers = [{"layer": l, "apps": sorted(a for a, ls in layers.items() if l in ls)} for l in parse_layers]
    preds = [{"id": n.id, "text": ir.pstr(n.pred), "apps": list(n.users)} for n in prog.preds if len(n.users) > 1]
    maps = []
    slots = []
    for m in prog.maps:
        apps = sorted({u.app for u in m.uses})
        stats = sorted({f"{u.app}.{u.stat}" for u in m.uses})
        maps.append({"map": m.name, "kind": m.kind, "key": [f.name for f in m.key], "apps": apps, "stats": stats,
                     "slots": len(m.slots)})
        for s in m.slots:
            if len(s.uses) > 1:
                slots.append({"slot": s.name, "map": m.name, "func": s.func, "args": [a.name for a in s.args],
                              "uses": [f"{u.app}.{u.stat}.{u.member}" for u in s.uses]})
    n_stats = sum(len(model_app.stats) for model_app in model_prog.apps)
    n_aggs = sum(max(1, len(st.aggregates)) for model_app in model_prog.apps for st in model_app.stats)
    before = {
        "programs": len(prog.apps),
        "header_parses_per_packet": sum(len([l for l in ls if l in parse_layers]) for ls in layers.values()),
        "predicates": _preds_before(model_prog),
        "maps": n_stats,
        "aggregates": n_aggs,
        "map_lookups_per_packet_max": n_stats,
    }
    after = {
        "programs": 1,
        "header_parses_per_packet": len(parse_layers),
        "predicates": len(prog.preds),
        "maps": len(prog.maps),
        "aggregates": sum(len(m.slots) for m in prog.maps) + sum(1 for m in prog.maps if m.kind == "track"),
        "map_lookups_per_packet_max": len(prog.maps),
    }
    rep = {"apps": [a.name for a in prog.apps], "shared_layers": shared_layers, "shared_predicates": preds,
           "maps": maps, "shared_slots": slots, "before": before, "after": after}
    if load_info is not None:
        rep["loaded"] = load_info
    return rep


def render_text(rep: dict) -> str:
    out = [f"merge report: {len(rep['apps'])} apps -> 1 XDP program", ""]
    out.append("                              before   after")
    labels = {"programs": "programs", "header_parses_per_packet": "header parses / packet",
              "predicates": "distinct predicates", "maps": "maps", "aggregates": "aggregates kept",
              "map_lookups_per_packet_max": "map lookups / packet (max)"}
    for k, label in labels.items():
        out.append(f"  {label:<27} {rep['before'][k]:>6}  {rep['after'][k]:>6}")
    out.append("")
    out.append("parse layers (each parsed once, for):")
    for l in rep["shared_layers"]:
        out.append(f"  {l['layer']:<6} {', '.join(l['apps']) or '(implied)'}")
    out.append("")
    out.append(f"shared predicates ({len(rep['shared_predicates'])}):")
    for p in rep["shared_predicates"]:
        out.append(f"  p{p['id']:<3} {p['text']}    [{', '.join(p['apps'])}]")
    out.append("")
    out.append("maps:")
    for m in rep["maps"]:
        key = ", ".join(m["key"]) or "-"
        out.append(f"  {m['map']:<4} {m['kind']:<6} key ({key}): {m['slots']} slot(s) for {', '.join(m['stats'])}")
    if rep["shared_slots"]:
        out.append("")
        out.append("shared statistics (one slot, several apps):")
        for s in rep["shared_slots"]:
            out.append(f"  {s['slot']} in {s['map']}: {s['func']}({', '.join(s['args'])}) <- {', '.join(s['uses'])}")
    if "loaded" in rep:
        li = rep["loaded"]
        out.append("")
        if "error" in li:
            out.append(f"loaded program: not loaded ({li['error']})")
        else:
            out.append(f"loaded program: {li['xlated_insns']} instructions ({li['xlated_bytes']} bytes xlated, "
                       f"{li['jited_bytes']} bytes jited), {li['verified_insns']} instructions verified")
    return "\n".join(out) + "\n"
