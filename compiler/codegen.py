"""Code generation: the merged IR to the XDP C program, ASL stubs and manifest.

This module makes every decision -- which predicates are evaluated where, how
each map is updated, what each event record holds -- and hands the templates
in codegen_templates/ a plan of plain data and ready C statements. The
templates only lay the plan out; they hold no logic of their own.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from dsl.fields import FIELDS, Field, Kind

from . import c_fields, ir
from . import layout as L
from .cexpr import CExpr, StatRead
from .parse_outcomes import OUTCOMES
from .passes.merge_stats import slot_gates

TEMPLATES = Path(__file__).resolve().parent.parent / "codegen_templates"
IPV6_EXT_MAX = 6
RINGBUF_PAGES = 64           # per app: 256 KiB with 4 KiB pages


@dataclass
class Block:
    """A commented block of C statements, run only when ``gate`` (C) holds."""
    comment: list[str]
    lines: list[str] = field(default_factory=list)
    gate: str | None = None


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)
    env.filters["c_string"] = c_string
    env.filters["py_string"] = lambda s: json.dumps(s)
    return env


def c_string(s: str) -> str:
    """A string as a C comment-safe text (no */, no newlines)."""
    return s.replace("*/", "* /").replace("\n", " ").replace("\r", " ")


def _where(span) -> str:
    return f"{span.file}:{span.line}"


class Generator:
    def __init__(self, prog: ir.ProgramIR, replay: bool = False):
        self.prog = prog
        self.replay = replay
        self.params = {(p.app, p.name): p.index for p in prog.params}
        self.counters = L.counters_for(prog)
        self.apps = {a.name: a for a in prog.apps}
        self.on_demand = [a for a in prog.apps if a.mode == "on_demand"]
        self.values: dict[str, L.Struct] = {}
        self.keys: dict[str, L.Struct] = {}
        self.hash_structs: dict[str, L.Struct] = {}
        self.events: list[L.EventLayout] = []
        self.max_reads = 0
        self.windows = sorted({s.window_ns for m in prog.maps for s in m.slots if s.window_ns})
        for m in prog.maps:
            if m.key:
                self.keys[m.name] = L.field_struct(f"xm_k_{m.name}", m.key)
            if m.kind == "fused":
                self.values[m.name] = L.value_struct(m)
            for s in m.slots:
                if s.func in ("distinct", "cms"):
                    self.hash_structs[s.name] = L.field_struct(f"xm_h_{s.name}", s.args)
        self._action_ids()

    # ---- names -------------------------------------------------------------------
    def ctr(self, name: str) -> str:
        return str(self.counters.index(name))

    def app_bit(self, app: str) -> str:
        return f"(1ULL << {self.apps[app].index})"

    def gate(self, apps) -> str | None:
        """C test of the enable bits of on-demand ``apps`` (None: always on)."""
        if not apps:
            return None
        mask = " | ".join(self.app_bit(a) for a in apps)
        return f"(en & ({mask}))"

    def _action_ids(self) -> None:
        self.action_of: dict[tuple[int, int], int] = {}
        n = 0
        for a in self.prog.apps:
            for r in a.rules:
                for i, act in enumerate(r.actions):
                    self.action_of[(r.id, i)] = n
                    if isinstance(act, ir.ASendPacket):
                        st = L.field_struct(f"xm_ev_{n}", act.fields, L.EVENT_HEAD)
                        typ = "packet"
                    else:
                        st = L.field_struct(f"xm_ev_{n}", (), L.EVENT_HEAD)
                        typ = {ir.ASendSummary: "summary", ir.AAlert: "alert", ir.AEnable: "enable"}[type(act)]
                    self.events.append(L.EventLayout(a.name, n, r.id, typ, st))
                    n += 1

    # ---- predicates (phase 1) --------------------------------------------------------
    def pred_blocks(self) -> list[Block]:
        """Phase-1 predicates in id order. Those only on-demand apps use are
        computed under those apps' enable bits; the rest for every packet."""
        cx = CExpr(self.params)
        modes = {a.name: a.mode for a in self.prog.apps}
        blocks: list[Block] = []
        cur_gate = object()
        for n in self.prog.preds:
            if n.phase != 1:
                continue
            gate_apps = () if any(modes[u] != "on_demand" for u in n.users) else n.users
            gate = self.gate(gate_apps)
            if gate != cur_gate:
                blocks.append(Block([f"only while {', '.join(gate_apps)} enabled"] if gate else
                                    ["for every packet"], [], gate))
                cur_gate = gate
            src = ", ".join(sorted({_where(s) for s in n.spans}))
            blocks[-1].lines.append(f"P[{n.id}] = {cx.pred(n.pred)};" + (f"  /* {c_string(src)} */" if src else ""))
        return blocks

    # ---- statistics ------------------------------------------------------------------
    def slot_cond(self, s: ir.Slot) -> str:
        g = self.gate(slot_gates(self.prog, s))
        return f"(P[{s.guard}] && {g})" if g else f"P[{s.guard}]"

    def copy_fields(self, dst: str, st: L.Struct, sources: dict | None = None,
                    zero_absent: bool = False) -> list[str]:
        """C statements filling the field members of ``st`` at ``dst`` (``k.``,
        ``e->``) from the packet. ``sources`` maps a member's field to the field
        read instead (stat[...] keys); with ``zero_absent`` a field whose layer
        the packet lacks is left zero."""
        out = []
        for mem in st.members:
            if mem.role != "field":
                continue
            src_f = sources[mem.field] if sources else FIELDS[mem.field]
            cf = c_fields.c_field(src_f.name)
            guard = f"if (p->layers & {cf.layer_bit}) " if zero_absent and cf.layer != "pkt" else ""
            if "[" not in mem.ctype:
                stmt = f"{dst}{mem.name} = {cf.expr};"
            elif src_f.kind == Kind.IP4 and mem.kind == "ip":
                stmt = f"xm_v4mapped({dst}{mem.name}, {cf.expr});"
            else:
                src = f"&{cf.expr}" if cf.ctype == "__be32" else cf.expr
                stmt = f"__builtin_memcpy({dst}{mem.name}, {src}, {mem.size});"
            out.append(guard + stmt)
        return out

    def key_fill(self, var: str, st: L.Struct, sources: dict | None = None) -> list[str]:
        return [f"__builtin_memset(&{var}, 0, sizeof({var}));"] + self.copy_fields(f"{var}.", st, sources)

    def map_blocks(self) -> list[Block]:
        cx = CExpr(self.params)
        blocks = []
        for m in self.prog.maps:
            uses = sorted({(u.app, u.stat, _where(u.span)) for u in m.uses})
            comment = [f"{m.name}: {m.kind} map, key ({', '.join(f.name for f in m.key) or 'none'})"]
            comment += [f"  {a}.{s}  ({w})" for a, s, w in uses]
            if m.kind == "fused":
                blocks.append(Block(comment, self._fused(m, cx)))
            elif m.kind == "track":
                blocks.append(Block(comment, self._track(m, cx)))
            elif m.kind == "hll":
                blocks.append(Block(comment, self._hll(m, cx)))
            elif m.kind == "cms":
                blocks.append(Block(comment, self._cms(m, cx)))
        return blocks

    def _fused(self, m: ir.StatMap, cx: CExpr) -> list[str]:
        vs = self.values[m.name]
        conds = {s.name: self.slot_cond(s) for s in m.slots}
        anyc = " || ".join(dict.fromkeys(conds.values()))
        pres = cx.presence(list(m.key))
        test = f"{pres} && ({anyc})" if pres else anyc
        out = [f"if ({test}) {{"]
        if m.key:
            out += ["    struct xm_k_%s k;" % m.name]
            out += ["    " + l for l in self.key_fill("k", self.keys[m.name])]
            out += [f"    struct xm_v_{m.name} *v = xm_upsert_{m.name}(&k);"]
        else:
            out += [f"    struct xm_v_{m.name} *v = {m.name}.lookup(XM_ZERO_KEY);"]
        out += ["    if (v) {"]
        windows = sorted({s.window_ns for s in m.slots}, key=lambda w: w or 0)
        for w in windows:
            group = [s for s in m.slots if s.window_ns == w]
            ind = "        "
            if w is not None:
                gconds = " || ".join(dict.fromkeys(conds[s.name] for s in group))
                out.append(f"{ind}if ({gconds}) {{   /* window {w} ns */")
                ind += "    "
                out.append(f"{ind}if (v->e_{w} != ep_{w}) {{   /* a new window: reset its slots */")
                out.append(f"{ind}    v->e_{w} = ep_{w};")
                for s in group:
                    out.append(f"{ind}    {self._reset(s, vs)}")
                out.append(f"{ind}}}")
            for s in group:
                out.append(f"{ind}if ({conds[s.name]}) {{   /* {s.name}: {s.func}({', '.join(a.name for a in s.args)}) */")
                out += [f"{ind}    {l}" for l in self._update(s, m)]
                out.append(f"{ind}}}")
            if w is not None:
                out.append("        }")
        out += ["    }", "}"]
        return out

    def _reset(self, s: ir.Slot, vs: L.Struct) -> str:
        if s.func == "hist":
            return f"__builtin_memset(v->{s.name}, 0, sizeof(v->{s.name}));"
        if s.func == "distinct":
            return (f"__builtin_memset(v->{s.name}_regs, 0, sizeof(v->{s.name}_regs)); "
                    f"v->{s.name}_z = 0;   /* z re-initialised on first update */")
        return f"v->{s.name} = 0;"

    def _arg(self, f: Field) -> str:
        return f"(__u64){c_fields.expr(f.name)}"

    def _update(self, s: ir.Slot, m: ir.StatMap) -> list[str]:
        if s.func == "count":
            return [f"__sync_fetch_and_add(&v->{s.name}, 1);"]
        pres = CExpr.layer_mask(list(s.args))
        wrap = (lambda lines: [f"if ((p->layers & ({pres})) == ({pres})) {{"] + ["    " + l for l in lines] + ["}"]) \
            if pres else (lambda lines: lines)
        if s.func == "sum":
            return wrap([f"__sync_fetch_and_add(&v->{s.name}, {self._arg(s.args[0])});"])
        if s.func == "max":
            return wrap([f"xm_max(&v->{s.name}, {self._arg(s.args[0])});"])
        if s.func == "min":
            return wrap([f"xm_max(&v->{s.name}, ~{self._arg(s.args[0])});   /* stored as ~min: 0 = none */"])
        if s.func == "hist":
            nb = L.hist_buckets(s.args[0])
            return wrap([f"__u32 b = xm_log2_bucket({self._arg(s.args[0])});",
                         f"if (b < {nb})", f"    __sync_fetch_and_add(&v->{s.name}[b], 1);"])
        if s.func == "distinct":
            regs = dict(s.options)["registers"]
            hs = self.hash_structs[s.name]
            lines = [f"struct xm_h_{s.name} hk;"] + self.key_fill("hk", hs)
            lines += [f"__u64 h = xm_hash((__u64 *)&hk, {hs.size // 8}, 0);",
                      f"if (v->{s.name}_z == 0) {{ v->{s.name}_z = {regs}ULL << XM_HLL_S; v->{s.name}_zeros = {regs}; }}",
                      f"__u32 i = h & {regs - 1};",
                      f"__u8 r = xm_hll_rank(h >> {int(math.log2(regs))}, {64 - int(math.log2(regs)) + 1});",
                      f"__u8 old = v->{s.name}_regs[i];",
                      "if (r > old) {",
                      f"    v->{s.name}_regs[i] = r;",
                      f"    v->{s.name}_z = v->{s.name}_z - xm_hll_pow(old) + xm_hll_pow(r);",
                      f"    if (old == 0) v->{s.name}_zeros -= 1;",
                      "}"]
            return wrap(lines)
        raise AssertionError(s.func)

    def _track(self, m: ir.StatMap, cx: CExpr) -> list[str]:
        t = m.track
        bucket_ns = max(1, t.expire_ns // L.TRACK_BUCKETS)
        pres = cx.presence(list(m.key))
        test = f"(P[{t.open_guard}] || P[{t.close_guard}])"
        gate = self.gate(() if self.apps[t.app].mode != "on_demand" else (t.app,))
        if gate:
            test = f"{gate} && {test}"
        if pres:
            test = f"{pres} && {test}"
        out = [f"if ({test}) {{",
               f"    struct xm_k_{m.name} k;"]
        out += ["    " + l for l in self.key_fill("k", self.keys[m.name])]
        nb = L.TRACK_BUCKETS
        out += [f"    __u64 b = now / {bucket_ns}ULL;   /* buckets of expire/{nb} */",
                f"    if (P[{t.open_guard}]) {{",
                f"        struct xm_track_v *t = {m.name}.lookup(&k);",
                f"        if (!t || b - t->bucket >= {nb}) {{   /* new, or expired: (re)open */",
                "            struct xm_track_v nv = { .opened = now, .bucket = b };",
                f"            if ({m.name}.update(&k, &nv) == 0)",
                f"                xm_track_add_{m.name}(b, 1);",
                "            else",
                f"                xm_count({self.ctr(f'map.{m.name}.insert_failed')});",
                "        }",
                "    }",
                f"    if (P[{t.close_guard}]) {{",
                f"        struct xm_track_v *t = {m.name}.lookup(&k);",
                "        if (t) {",
                f"            if (b - t->bucket < {nb})",
                f"                xm_track_add_{m.name}(t->bucket, -1);",
                f"            {m.name}.delete(&k);",
                "        }",
                "    }",
                "}"]
        return out

    def _hll(self, m: ir.StatMap, cx: CExpr) -> list[str]:
        s = m.slots[0]
        regs = dict(s.options)["registers"]
        log2m = int(math.log2(regs))
        hs = self.hash_structs[s.name]
        cond = self.slot_cond(s)
        pres = cx.presence(list(s.args))
        test = f"{pres} && {cond}" if pres else cond
        ep = f"ep_{s.window_ns}" if s.window_ns else "1"
        out = [f"if ({test}) {{",
               f"    struct xm_h_{s.name} hk;"]
        out += ["    " + l for l in self.key_fill("hk", hs)]
        out += [f"    __u64 h = xm_hash((__u64 *)&hk, {hs.size // 8}, 0);",
                f"    struct xm_hll_hdr *hd = {m.name}_hdr.lookup(XM_ZERO_KEY);",
                f"    __u32 i = h & {regs - 1};",
                f"    __u64 *reg = {m.name}.lookup(&i);",
                "    if (hd && reg) {",
                f"        if (hd->epoch != {ep}) {{   /* a new window: every register reads 0 */",
                f"            hd->epoch = {ep};",
                f"            hd->z = {regs}ULL << XM_HLL_S;",
                f"            hd->zeros = {regs};",
                "        }",
                f"        __u8 r = xm_hll_rank(h >> {log2m}, {64 - log2m + 1});",
                f"        __u8 old = (*reg >> 8) == {ep} ? (*reg & 0xff) : 0;",
                "        if (r > old) {",
                f"            *reg = ((__u64){ep} << 8) | r;",
                "            hd->z = hd->z - xm_hll_pow(old) + xm_hll_pow(r);",
                "            if (old == 0) hd->zeros -= 1;",
                "        }",
                "    }",
                "}"]
        return out

    def _cms(self, m: ir.StatMap, cx: CExpr) -> list[str]:
        s = m.slots[0]
        width, depth = dict(s.options)["width"], dict(s.options)["depth"]
        hs = self.hash_structs[s.name]
        cond = self.slot_cond(s)
        pres = cx.presence(list(s.args))
        test = f"{pres} && {cond}" if pres else cond
        tag = f"((ep_{s.window_ns} & 0xffffffULL) << 40)" if s.window_ns else "0"
        out = [f"if ({test}) {{",
               f"    struct xm_h_{s.name} hk;"]
        out += ["    " + l for l in self.key_fill("hk", hs)]
        out += ["#pragma unroll",
                f"    for (__u32 row = 0; row < {depth}; row++) {{",
                f"        __u32 i = row * {width} + (xm_hash((__u64 *)&hk, {hs.size // 8}, row + 1) & {width - 1});",
                f"        __u64 *c = {m.name}.lookup(&i);",
                "        if (!c)",
                "            continue;",
                f"        if ((*c & ~XM_CMS_COUNT) == {tag})",
                "            __sync_fetch_and_add(c, 1);",
                "        else",
                f"            *c = {tag} | 1;   /* a new window */",
                "    }",
                "}"]
        return out

    # ---- T3 ---------------------------------------------------------------------------
    def t3_blocks(self) -> list[Block]:
        blocks = []
        for a in self.prog.apps:
            if not a.rules:
                continue
            blocks.append(self._t3_app(a))
        return blocks

    def _t3_app(self, a: ir.AppIR) -> Block:
        ids = set()
        for r in a.rules:
            ids |= _closure(self.prog, r.cond)
        phase3 = [self.prog.preds[i] for i in sorted(ids) if self.prog.preds[i].phase == 3]
        vstats: dict = {}
        vsizes: dict = {}
        for n in phase3:
            for v in _pred_values(n.pred):
                for x in _walk_values(v):
                    if isinstance(x, ir.VStat):
                        vstats.setdefault(ir.vkey(x), x)
                    elif isinstance(x, ir.VSize):
                        vsizes.setdefault((x.app, x.stat), x)
        lines: list[str] = []
        reads: dict = {}
        ptrs: dict = {}
        for i, (k, v) in enumerate(vstats.items()):
            mname, sname = self.prog.stat_slots[(v.app, v.stat, v.member)]
            m = next(mm for mm in self.prog.maps if mm.name == mname)
            slot = next(s for s in m.slots if s.name == sname)
            var, has = f"X[{i}]", f"H[{i}]"
            reads[k] = StatRead(var, has)
            lines += [f"{var} = 0;", f"{has} = 0;"]
            self.max_reads = max(self.max_reads, i + 1)
            lines += self._read_stat(m, slot, v, var, has, ptrs)
        size_exprs = {}
        for (app, stat) in vsizes:
            mname = self.prog.track_maps[(app, stat)]
            size_exprs[(app, stat)] = f"xm_track_size_{mname}(now / {self._track_bucket(mname)}ULL)"
        cx = CExpr(self.params, reads, size_exprs)
        for n in phase3:
            lines.append(f"P[{n.id}] = {cx.pred(n.pred)};   /* p{n.id} */")
        for r in a.rules:
            lines.append(f"if (P[{r.cond}]) {{   /* rule {r.id}: {c_string(_where(r.span))} */")
            lines.append(f"    xm_count({self.ctr(f'rule.{r.id}.fired')});")
            for i, act in enumerate(r.actions):
                lines += ["    " + l for l in self._action(a, r, i, act)]
            lines.append("}")
        gate = self.gate((a.name,) if a.mode == "on_demand" else ())
        sel = f"P[{a.select}]" if a.select is not None else "1"
        cond = f"{gate} && {sel}" if gate else sel
        comment = [f"t3 of {a.name} ({_where(a.span)})"]
        return Block(comment, [f"if ({cond}) {{"] + ["    " + l for l in lines] + ["}"])

    def _track_bucket(self, mname: str) -> int:
        m = next(mm for mm in self.prog.maps if mm.name == mname)
        return max(1, m.track.expire_ns // L.TRACK_BUCKETS)

    def _read_stat(self, m, slot, v: ir.VStat, var, has, ptrs) -> list[str]:
        out = []
        key_fields = list(v.key)
        cx = CExpr(self.params)
        if m.kind == "hll":
            regs = dict(slot.options)["registers"]
            ep = f"ep_{slot.window_ns}" if slot.window_ns else "1"
            out += ["{",
                    f"    struct xm_hll_hdr *hd = {m.name}_hdr.lookup(XM_ZERO_KEY);",
                    f"    {has} = 1;",
                    f"    if (hd && hd->epoch == {ep})",
                    f"        {var} = xm_hll_estimate(hd->z, hd->zeros, {regs}, {_am2(regs)}ULL, {_lnm(regs)}ULL);",
                    "}"]
            return out
        if m.kind == "cms":
            width, depth = dict(slot.options)["width"], dict(slot.options)["depth"]
            hs = self.hash_structs[slot.name]
            pres = cx.presence(list(slot.args))
            tag = f"((ep_{slot.window_ns} & 0xffffffULL) << 40)" if slot.window_ns else "0"
            out += [f"if ({pres or '1'}) {{",
                    f"    struct xm_h_{slot.name} hk;"]
            out += ["    " + l for l in self.key_fill("hk", hs)]
            out += [f"    {has} = 1;",
                    f"    {var} = ~0ULL;",
                    "#pragma unroll",
                    f"    for (__u32 row = 0; row < {depth}; row++) {{",
                    f"        __u32 i = row * {width} + (xm_hash((__u64 *)&hk, {hs.size // 8}, row + 1) & {width - 1});",
                    f"        __u64 *c = {m.name}.lookup(&i);",
                    f"        __u64 n = (c && (*c & ~XM_CMS_COUNT) == {tag}) ? (*c & XM_CMS_COUNT) : 0;",
                    f"        if (n < {var}) {var} = n;",
                    "    }",
                    "}"]
            return out
        # fused map: the slot's value for the key built from ``v.key`` (the
        # fields written in stat[...], or the stat's own key fields)
        written = self.prog.stat_keys[(v.app, v.stat)]
        mapping = dict(zip(written, key_fields))
        pname = f"r_{m.name}_" + "_".join(f.name.replace(".", "_") for f in key_fields) if m.key else f"v_{m.name}"
        if m.key and pname not in ptrs:
            ptrs[pname] = True
            pres = cx.presence(key_fields)
            fill = self.key_fill("k", self.keys[m.name], mapping)
            out.append(f"struct xm_v_{m.name} *{pname} = NULL;")
            out.append(f"__u8 {pname}_ok = {f'({pres}) != 0' if pres else '1'};   /* key fields present */")
            out.append(f"if ({pname}_ok) {{ {{ struct xm_k_{m.name} k; {' '.join(fill)} "
                       f"{pname} = {m.name}.lookup(&k); }} }}")
        elif not m.key:
            pname = f"r_{m.name}"
            if pname not in ptrs:
                ptrs[pname] = True
                out.append(f"struct xm_v_{m.name} *{pname} = {m.name}.lookup(XM_ZERO_KEY);")
                out.append(f"__u8 {pname}_ok = 1;")
        read = self._slot_read(slot, pname)
        out += [f"if ({pname}_ok) {{",
                f"    {has} = 1;",
                f"    if ({pname}) {var} = {read};",
                "}"]
        return out

    def _slot_read(self, s: ir.Slot, ptr: str) -> str:
        if s.func == "distinct":
            regs = dict(s.options)["registers"]
            # z == 0: never updated (a key of another slot of this map): 0 distinct
            val = (f"({ptr}->{s.name}_z ? xm_hll_estimate({ptr}->{s.name}_z, {ptr}->{s.name}_zeros, {regs}, "
                   f"{_am2(regs)}ULL, {_lnm(regs)}ULL) : 0)")
        elif s.func == "min":
            val = f"({ptr}->{s.name} ? ~{ptr}->{s.name} : 0)"
        else:
            val = f"{ptr}->{s.name}"
        if s.window_ns:
            return f"({ptr}->e_{s.window_ns} == ep_{s.window_ns} ? {val} : 0)"
        return val

    def _action(self, a: ir.AppIR, r: ir.RuleIR, i: int, act) -> list[str]:
        aid = self.action_of[(r.id, i)]
        ev = self.events[aid]
        rb = f"xm_rb_{a.name}"
        limited = getattr(act, "limiter", -1)
        out = []
        if isinstance(act, ir.AEnable):
            target = self.apps[act.app]
            out += [f"if (xm_enable(ctl, {target.index}, now + {act.duration_ns}ULL)) {{   /* enable {act.app}: it was off */"]
            body = self._emit(ev, rb, a, fields=())
            out += ["    " + l for l in body] + ["}"]
            return out
        lim = act.limit
        out.append(f"if (xm_rate_ok({limited}, now, {lim.interval_ns}ULL, {lim.per_ns}ULL)) {{   /* limit {lim.text} */")
        body = self._emit(ev, rb, a, fields=getattr(act, "fields", ()))
        out += ["    " + l for l in body]
        out += ["} else {", f"    xm_count({self.ctr(f'app.{a.name}.rate_limited')});", "}"]
        return out

    def _emit(self, ev: L.EventLayout, rb: str, a: ir.AppIR, fields) -> list[str]:
        st = ev.struct
        out = [f"struct xm_ev_{ev.action} *e = {rb}.ringbuf_reserve(sizeof(struct xm_ev_{ev.action}));",
               "if (e) {",
               "    __builtin_memset(e, 0, sizeof(*e));",
               "    e->ts = now;",
               f"    e->action = {ev.action};",
               f"    e->rule = {ev.rule};"]
        # a field absent from this packet is sent as zeros
        out += ["    " + l for l in self.copy_fields("e->", st, zero_absent=True)]
        out += [f"    {rb}.ringbuf_submit(e, 0);",
                f"    xm_count({self.ctr(f'app.{a.name}.events')});",
                "} else {",
                f"    xm_count({self.ctr(f'app.{a.name}.ringbuf_full')});",
                "}"]
        return out

    # ---- declarations ---------------------------------------------------------------------
    def map_decls(self) -> list[str]:
        out = []
        for m in self.prog.maps:
            if m.kind == "fused":
                if m.key:
                    table = "lru_hash" if m.on_full == "lru" else "hash"
                    out.append(f'BPF_TABLE("{table}", struct xm_k_{m.name}, struct xm_v_{m.name}, {m.name}, {m.size});')
                else:
                    out.append(f"BPF_ARRAY({m.name}, struct xm_v_{m.name}, 1);")
            elif m.kind == "track":
                out.append(f'BPF_TABLE("lru_hash", struct xm_k_{m.name}, struct xm_track_v, {m.name}, {m.size});')
                out.append(f"BPF_ARRAY({m.name}_b, struct xm_bucket, {L.TRACK_BUCKETS});")
            elif m.kind == "hll":
                regs = dict(m.slots[0].options)["registers"]
                out.append(f"BPF_ARRAY({m.name}, __u64, {regs});")
                out.append(f"BPF_ARRAY({m.name}_hdr, struct xm_hll_hdr, 1);")
            elif m.kind == "cms":
                o = dict(m.slots[0].options)
                out.append(f"BPF_ARRAY({m.name}, __u64, {o['width'] * o['depth']});")
        return out

    def structs(self) -> list[L.Struct]:
        return list(self.keys.values()) + list(self.values.values()) + list(self.hash_structs.values()) + \
            [e.struct for e in self.events]

    def zero_size(self) -> int:
        return max([8] + [v.size for v in self.values.values()])

    def upserts(self) -> list[dict]:
        out = []
        for m in self.prog.maps:
            if m.kind == "fused" and m.key:
                out.append({"map": m.name, "fail_ctr": self.ctr(f"map.{m.name}.insert_failed")})
        return out

    def plan(self) -> dict:
        prog = self.prog
        return {
            "apps": prog.apps,
            "files": sorted({a.file for a in prog.apps}),
            "layers": set(prog.layers),
            "ipv6_ext_max": IPV6_EXT_MAX,
            "replay": self.replay,
            "counters": list(enumerate(self.counters.names)),
            "n_counters": len(self.counters.names),
            "n_params": len(prog.params),
            "params": prog.params,
            "n_apps": len(prog.apps),
            "on_demand": [(a.index, a.name) for a in self.on_demand],
            "n_limiters": max([getattr(act, "limiter", -1) for a in prog.apps for r in a.rules
                               for act in r.actions] + [-1]) + 1,
            "windows": self.windows,
            "structs": self.structs(),
            "map_decls": self.map_decls(),
            "upserts": self.upserts(),
            "zero_size": self.zero_size(),
            "pred_blocks": self.pred_blocks(),
            "map_blocks": self.map_blocks(),
            "t3_blocks": self.t3_blocks(),
            "n_preds": len(prog.preds),
            "n_reads": max(self.max_reads, 1),
            "tracks": [m.name for m in prog.maps if m.kind == "track"],
            "ringbufs": [a.name for a in prog.apps if a.rules],
            "ringbuf_pages": RINGBUF_PAGES,
            "hll_scale": L.HLL_SCALE_BITS,
            "pass_ctr": self.ctr("verdict.pass"),
            "outcome_base": 1,
        }

    def render_c(self) -> str:
        return _env().get_template("xdp_program.c.j2").render(**self.plan())


def _am2(m: int) -> int:
    """alpha_m * m^2, the HyperLogLog estimator's constant, as an integer."""
    alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1 + 1.079 / m))
    return int(round(alpha * m * m))


def _lnm(m: int) -> int:
    """log2(m) in 2^-16 units, for linear counting (exact: m is a power of two)."""
    return int(math.log2(m)) << 16


def _closure(prog: ir.ProgramIR, pid: int) -> set[int]:
    out = {pid}
    p = prog.preds[pid].pred
    if isinstance(p, (ir.PAnd, ir.POr)):
        for o in p.operands:
            out |= _closure(prog, o.id)
    elif isinstance(p, ir.PNot):
        out |= _closure(prog, p.operand.id)
    return out


def _pred_values(p) -> list:
    if isinstance(p, ir.PCmp):
        return [p.left, p.right]
    if isinstance(p, ir.PIn):
        return [p.value]
    return []


def _walk_values(v):
    yield v
    if isinstance(v, ir.VArith):
        yield from _walk_values(v.left)
        yield from _walk_values(v.right)


def generate_c(prog: ir.ProgramIR, replay: bool = False) -> str:
    return Generator(prog, replay).render_c()
