"""The C backend: the program plan (compiler/plan.py) printed as the XDP program.

Every decision is in the plan; this module only supplies the templates in
codegen_templates/ with the C spelling of what they print: predicate and value
expressions (compiler/cexpr.py), presence tests, enable-bit gates and the field
copies that fill keys and event records. ``xdp_program.c.j2`` lays the program
out, ``t2.c.j2`` prints the map updates and ``t3.c.j2`` the rules.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2

from dsl.fields import FIELDS, Field, Kind

from . import abi, c_fields, ir
from . import layout as L
from . import plan as P
from .pins import pins
from .cexpr import CExpr, StatRead
from .parse_outcomes import ParserFlags

TEMPLATES = Path(__file__).resolve().parent.parent / "codegen_templates"


@functools.lru_cache(maxsize=1)
def env() -> jinja2.Environment:
    """The Jinja2 environment of every template the compiler renders."""
    e = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                           keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                           autoescape=False)
    e.filters["c_string"] = c_string
    e.filters["py_string"] = lambda s: json.dumps(s)
    return e


def c_string(s: str) -> str:
    """A string as a C comment-safe text (no */, no newlines)."""
    return s.replace("*/", "* /").replace("\n", " ").replace("\r", " ")


def where(span) -> str:
    return f"{span.file}:{span.line}"


@dataclass(frozen=True)
class Copy:
    """One field member of a key or record, filled from the packet."""
    op: str            # "assign" | "v4mapped" | "memcpy"
    member: str
    src: str           # C expression of the source field
    size: int
    guard: str = ""    # "if (p->layers & XM_L_X) " when absent fields stay zero


class CView:
    """What the templates ask of a plan, in C."""

    # T1 renews P (XM_FRESH) every this many predicates: few enough that what clang
    # keeps live between two renewals fits in registers (256 predicates in a row
    # spilled past the 512-byte stack; every 64 sufficed there).
    FRESH_EVERY = 16

    def __init__(self, plan: P.Plan):
        self.plan = plan
        self.abi = abi
        self.cx = CExpr(plan.param_index(), sets=plan.set_index())
        self.files = sorted({a.app.file for a in plan.apps})
        self.pins = pins(plan)

    # ---- expressions --------------------------------------------------------------------
    layer_mask = staticmethod(CExpr.layer_mask)

    def pin(self, name: str) -> str:
        """The name map ``name`` is pinned under (compiler/pins.py)."""
        return self.pins[name]

    def presence(self, fields) -> str | None:
        return self.cx.presence(list(fields))

    @staticmethod
    def arg(f: Field) -> str:
        return f"(__u64){c_fields.expr(f.name)}"

    @staticmethod
    def gate(g: P.Gate) -> str | None:
        """C test of the enable bits of a gate (None: always on)."""
        if not g:
            return None
        return "(s->en & (" + " | ".join(f"(1ULL << {b})" for b in g.bits) + "))"

    def slot_cond(self, sp: P.SlotPlan) -> str:
        g = self.gate(sp.gate)
        return f"(P[{sp.slot.guard}] && {g})" if g else f"P[{sp.slot.guard}]"

    @staticmethod
    def epoch(sp: P.SlotPlan) -> str:
        """The member holding the window a windowed slot's value is of."""
        return L.epoch_member(sp.name)

    @staticmethod
    def last(member: str) -> str:
        """The member keeping a windowed slot's ``member`` of its last window."""
        return L.last_member(member)

    def any_slot_cond(self, slots) -> str:
        return " || ".join(dict.fromkeys(self.slot_cond(sp) for sp in slots))

    def t3_expr(self, t: P.T3Plan) -> CExpr:
        reads = {ir.vkey(r.value): StatRead(f"X[{r.index}]", f"H[{r.index}]") for r in t.reads}
        sizes = {(s.app, s.stat): f"xm_track_size_{s.map}(now / {s.bucket_ns}ULL)" for s in t.sizes}
        return CExpr(self.plan.param_index(), reads, sizes, sets=self.plan.set_index())

    @staticmethod
    def ctr(index: int) -> str:
        return str(index)

    # ---- copies -----------------------------------------------------------------------------
    @staticmethod
    def copies(st: L.Struct, sources=None, zero_absent: bool = False) -> list[Copy]:
        """How each field member of ``st`` is filled. ``sources`` maps a member's
        field to the packet field read instead (stat[...] keys); with
        ``zero_absent`` a field whose layer the packet lacks is left zero."""
        src_of = dict(sources) if sources else None
        out = []
        for mem in st.members:
            if mem.role != "field":
                continue
            src_f = src_of[mem.field] if src_of else FIELDS[mem.field]
            cf = c_fields.c_field(src_f.name)
            guard = f"if (p->layers & {cf.layer_bit}) " if zero_absent and cf.layer != "pkt" else ""
            if "[" not in mem.ctype:
                out.append(Copy("assign", mem.name, cf.expr, mem.size, guard))
            elif src_f.kind == Kind.IP4 and mem.kind == "ip":
                out.append(Copy("v4mapped", mem.name, cf.expr, mem.size, guard))
            else:
                src = f"&{cf.expr}" if cf.ctype == "__be32" else cf.expr
                out.append(Copy("memcpy", mem.name, src, mem.size, guard))
        return out

    # ---- comments and declarations -------------------------------------------------------------
    where = staticmethod(where)

    @staticmethod
    def pred_source(n: ir.PredNode) -> str:
        src = ", ".join(sorted({where(s) for s in n.spans}))
        return f"  /* {c_string(src)} */" if src else ""

    @staticmethod
    def uses(m: P.MapPlan) -> list[str]:
        return [f"{a}.{s}  ({w})" for a, s, w in sorted({(u.app, u.stat, where(u.span)) for u in m.map.uses})]

    def fixed_structs(self) -> list[L.Struct]:
        return abi.fixed_structs() + [self.plan.params_struct, self.plan.ctl]

    def structs(self) -> list[L.Struct]:
        """The program's own structs: keys, values, hash inputs, event records."""
        maps = self.plan.maps
        return ([m.key for m in maps if m.key] + [m.value for m in maps if m.value]
                + [sp.hash_key for m in maps for sp in m.slots if sp.hash_key]
                + [e.record for e in self.plan.events])


def parser_context(decoders, ipv6_ext_max: int = abi.IPV6_EXT_MAX, store=c_fields.PKT_MEMBERS) -> dict:
    """What parse.c.j2 needs: the decoder flags, the members to store, the ABI and the
    extension-header bound."""
    return {"parse": ParserFlags.of(decoders), "store": tuple(store), "all_members": c_fields.PKT_MEMBERS,
            "abi": abi, "ipv6_ext_max": ipv6_ext_max}


def render_parser(decoders, ipv6_ext_max: int = abi.IPV6_EXT_MAX) -> str:
    """The packet parser alone, storing every member (tests embed it in programs of their own)."""
    return env().get_template("parse.c.j2").render(**parser_context(decoders, ipv6_ext_max))


def render_c(plan: P.Plan) -> str:
    return env().get_template("xdp_program.c.j2").render(plan=plan, c=CView(plan),
                                                         **parser_context(plan.decoders, store=plan.stores))


def generate_c(prog: ir.ProgramIR, replay: bool = False) -> str:
    return render_c(P.build(prog, replay))
