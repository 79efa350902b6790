"""The manifest: everything the runtime needs to know about a generated program.

Maps with their BPF types, key and value layouts (offsets, sizes, roles), which
apps share each map and slot; params with their slots and defaults; apps,
rules and their actions; event record layouts; the counter array; the parse
outcomes. The runtime reads this and derives nothing itself.
"""

from __future__ import annotations

from . import abi, ir
from .ir import action_text, expand, pstr
from .pins import pins
from .plan import Plan

MANIFEST_VERSION = 2        # 2: content-derived names, identities and fingerprints, the abi section


def _use(u: ir.Use) -> dict:
    d = {"app": u.app, "stat": u.stat, "file": u.span.file, "line": u.span.line}
    if u.member:
        d["member"] = u.member
    return d


def _limit(lim: ir.Limit | None) -> dict | None:
    if lim is None:
        return None
    return {"count": lim.count, "per_ns": lim.per_ns, "text": lim.text}


def build(plan: Plan, c_file: str = "xdpmon.c") -> dict:
    prog = plan.prog
    maps = []
    for mp in plan.maps:
        m = mp.map
        d = {
            "name": m.name,
            "identity": mp.identity,
            "fingerprint": mp.fingerprint,
            "kind": m.kind,
            "key_fields": [f.name for f in m.key],
            "size": m.size,
            "entries": mp.entries,            # what the kernel map holds (its max_entries)
            "on_full": m.on_full,
            "shared_by": sorted({u.app for u in m.uses}),
            "uses": [_use(u) for u in m.uses],
            "bpf_type": mp.bpf_type,
        }
        if m.kind == "fused":
            d["key"] = mp.key.to_json() if mp.key else None
            d["value"] = mp.value.to_json()
            if mp.index:
                d["index"] = [p.to_json() for p in mp.index]      # an array: entry i has the key of i's bits
        elif m.kind == "track":
            d["key"] = mp.key.to_json()
            d["value"] = abi.TRACK_VALUE.to_json()
            d["buckets_map"] = f"{m.name}_b"
            d["bucket_ns"] = mp.track.bucket_ns
            d["track"] = {"app": m.track.app, "stat": m.track.stat, "expire_ns": m.track.expire_ns,
                          "open_pred": m.track.open_guard, "close_pred": m.track.close_guard}
        elif m.kind == "hll":
            d["header_map"] = f"{m.name}_hdr"
            d["header"] = abi.HLL_HEADER.to_json()
        d["slots"] = []
        for sp in mp.slots:
            s = sp.slot
            sd = {"name": s.name, "identity": s.identity, "func": s.func, "args": [a.name for a in s.args], "guard": s.guard,
                  "window_ns": s.window_ns, "options": dict(s.options), "uses": [_use(u) for u in s.uses],
                  "gated_by": list(sp.gate.apps)}
            if sp.hll:
                sd["hll"] = {"registers": sp.hll.registers, "am2": sp.hll.am2, "log2m_fp": sp.hll.log2m_fp,
                             "scale_bits": abi.HLL_SCALE_BITS, "hash_key": sp.hash_key.to_json()}
            if s.func == "cms":
                sd["hash_key"] = sp.hash_key.to_json()
            if s.func == "hist":
                sd["buckets"] = sp.hist_buckets
            d["slots"].append(sd)
        maps.append(d)

    apps = []
    for a in prog.apps:
        stats = []
        for name in a.stats:
            if (a.name, name) in prog.track_maps:
                stats.append({"name": name, "kind": "track", "map": prog.track_maps[(a.name, name)], "members": []})
                continue
            members = [{"name": member, "map": mp, "slot": sl}
                       for (app, stat, member), (mp, sl) in prog.stat_slots.items()
                       if app == a.name and stat == name]
            key = list(prog.stat_keys.get((a.name, name), ()))
            stats.append({"name": name, "kind": "aggregate", "key": key, "map": members[0]["map"] if members else None,
                          "members": members})
        rules = []
        t3 = next((t for t in plan.t3 if t.app == a.name), None)
        for rp in (t3.rules if t3 else ()):
            r = rp.rule
            acts = []
            for ap in rp.actions:
                act = ap.action
                ad = {"id": ap.event.action, "event": ap.event.name, "type": ap.event.type, "text": action_text(act),
                      "limit": _limit(getattr(act, "limit", None)), "limiter": ap.limiter}
                if isinstance(act, ir.ASendPacket):
                    ad["fields"] = [f.name for f in act.fields]
                if isinstance(act, ir.AAlert):
                    ad["message"] = act.message
                if isinstance(act, ir.AEnable):
                    ad["app"] = act.app
                    ad["duration_ns"] = act.duration_ns
                if isinstance(act, ir.ASendSummary):
                    ad["every_ns"] = act.every_ns
                acts.append(ad)
            rules.append({"id": rp.ordinal, "name": rp.name, "counter": f"rule.{rp.name}.fired", "cond": r.cond, "cond_text": expand(prog.preds, r.cond),
                          "file": r.span.file, "line": r.span.line, "actions": acts})
        apps.append({
            "name": a.name, "index": a.index, "enable_bit": plan.app(a.name).enable_bit, "mode": a.mode, "file": a.file, "line": a.span.line,
            "asl": a.asl, "select": a.select, "stats": stats, "rules": rules,
            "params": [{"name": p.param.name, "index": p.index, "default": p.param.default}
                       for p in plan.params if p.param.app == a.name],
            "ringbuf": plan.app(a.name).ringbuf,
        })

    return {
        "version": MANIFEST_VERSION,
        "program": {"c_file": c_file, "function": "xdpmon_main", "replay": plan.replay,
                    "clock": plan.clock},
        "layers": sorted(prog.layers),
        "apps": apps,
        "maps": maps,
        "params": {"map": "xm_params", "value": plan.params_struct.to_json(),
                   "slots": [{"app": p.param.app, "name": p.param.name, "index": p.index,
                              "default": p.param.default} for p in plan.params]},
        "control": {"map": "xm_ctl", "value": plan.ctl.to_json(), "n_bits": plan.n_enable_bits},
        "counters": {"map": "xm_counters", "percpu": True, "names": list(plan.counters)},
        "events": [{"action": e.action, "name": e.name, "app": e.app, "rule": e.rule, "type": e.type,
                    "class_name": e.class_name if e.type == "packet" else None, "fingerprint": e.fingerprint,
                    "record": e.record.to_json()} for e in plan.events],
        "predicates": [{"id": n.id, "text": pstr(n.pred), "users": list(n.users), "phase": n.phase}
                       for n in prog.preds],
        "rate_limiters": {"map": "xm_rl", "n": plan.n_limiters},
        # Large `in` sets kept in maps: the runtime fills them before the first packet.
        "sets": [s.to_json() for s in plan.sets],
        # The programs to load: the entry point first; with several, each tail-calls
        # the next through the program array (runtime/dataplane/loader.py fills it).
        "stages": {"map": abi.STAGES_MAP if plan.staged else None,
                   "functions": [st.function for st in plan.stages],
                   "maps": [list(st.maps) for st in plan.stages], "t3": [list(st.t3) for st in plan.stages]},
        # The filters (runtime/control/blocklist.py writes them, runtime/dataplane/maps.py reads them).
        "filters": {
            "blocklist": {"map": abi.BLOCKLIST_MAP, "max_entries": abi.BLOCKLIST_MAX,
                          "key": abi.BLOCK_KEY.to_json(), "value": abi.BLOCK_VALUE.to_json(),
                          "v4_prefix": abi.BLOCK_V4_PREFIX, "families": list(plan.block_families),
                          "hash_map": abi.BLOCKHASH_MAP, "lens_max": abi.BLOCK_LENS, "bits_map": abi.BLOCKBITS_MAP,
                          "bits_words": abi.BLOCKBITS_WORDS, "bits_mul": abi.BLOCKBITS_MUL},
            "state": {"map": abi.FILTER_MAP, "value": abi.FILTER_STATE.to_json(), "enforce": abi.FILTER_ENFORCE,
                      "hashed": abi.FILTER_HASHED, "prefixes": abi.FILTER_PREFIXES},
            "interfaces": {"map": abi.IFACES_MAP, "max_entries": abi.IFACES_MAX,
                           "value": abi.IFACE_VALUE.to_json()},
        },
        "abi": abi.manifest_section(),
        # The maps that outlive the program and their pin names (compiler/pins.py).
        "pins": pins(plan),
    }
