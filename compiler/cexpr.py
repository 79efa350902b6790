"""IR predicates and values as C expressions over ``struct xm_pkt *p``.

Absence: a comparison is false when a field it reads is absent, so every
comparison is prefixed with the layer test of the fields it reads. Integers
are unsigned 64-bit; ``+``, ``*`` and ``&`` are C's on ``__u64``, ``-`` saturates at
0 and ``/`` by zero gives 0 (as BPF does), which the reference interpreter mirrors.

Statistic values (phase-3 predicates) are read into locals by codegen before
the predicates that use them; ``StatRead`` names those locals.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.fields import Field, Kind

from . import c_fields, ir


@dataclass(frozen=True)
class StatRead:
    """A statistic value read into locals: ``var`` (u64) and ``has`` (u8)."""
    var: str
    has: str


class CExpr:
    def __init__(self, param_index: dict[tuple[str, str], int],
                 stat_reads: dict | None = None, size_reads: dict | None = None, sets: dict | None = None):
        self.param_index = param_index
        self.sets = sets or {}                  # pred key -> compiler.plan.SetPlan (tested by a lookup)
        self.stat_reads = stat_reads or {}      # vkey(VStat) -> StatRead
        self.size_reads = size_reads or {}      # (app, stat) -> C expr

    # ---- presence -------------------------------------------------------------
    @staticmethod
    def layer_mask(fields: list[Field]) -> str | None:
        layers = sorted({f.layer for f in fields if f.layer != "pkt"})
        if not layers:
            return None
        return " | ".join(c_fields.LAYER_MACROS[l] for l in layers)

    def presence(self, fields: list[Field]) -> str | None:
        mask = self.layer_mask(fields)
        if mask is None:
            return None
        if "|" in mask:
            return f"(p->layers & ({mask})) == ({mask})"
        return f"(p->layers & {mask})"

    # ---- values ----------------------------------------------------------------
    def value(self, v: ir.Value) -> str:
        if isinstance(v, ir.VField):
            return f"(__u64){c_fields.expr(v.field.name)}"
        if isinstance(v, ir.VConst):
            if isinstance(v.value, bool):
                return "1" if v.value else "0"
            return f"{v.value}ULL"
        if isinstance(v, ir.VParam):
            return f"par->v[{self.param_index[(v.app, v.name)]}]"
        if isinstance(v, ir.VStat):
            return self.stat_reads[ir.vkey(v)].var
        if isinstance(v, ir.VSize):
            return self.size_reads[(v.app, v.stat)]
        if isinstance(v, ir.VArith):
            a, b = self.value(v.left), self.value(v.right)
            if v.op == "-":
                return f"xm_sub_sat({a}, {b})"
            if v.op == "/":
                return f"xm_div({a}, {b})"
            return f"({a} {v.op} {b})"
        raise AssertionError(v)

    def _stat_presence(self, v: ir.Value) -> list[str]:
        if isinstance(v, ir.VStat):
            return [self.stat_reads[ir.vkey(v)].has]
        if isinstance(v, ir.VArith):
            return self._stat_presence(v.left) + self._stat_presence(v.right)
        return []

    # ---- predicates --------------------------------------------------------------
    def pred(self, p: ir.Pred) -> str:
        if isinstance(p, ir.PTrue):
            return "1"
        if isinstance(p, ir.PFalse):
            return "0"
        if isinstance(p, ir.PRef):
            return f"P[{p.id}]"
        if isinstance(p, ir.PLayer):
            return f"((p->layers & {c_fields.LAYER_MACROS[p.layer]}) != 0)"
        if isinstance(p, ir.PAnd):
            return "(" + " && ".join(self.pred(o) for o in p.operands) + ")"
        if isinstance(p, ir.POr):
            return "(" + " || ".join(self.pred(o) for o in p.operands) + ")"
        if isinstance(p, ir.PNot):
            return f"!{self.pred(p.operand)}"
        if isinstance(p, ir.PCmp):
            fields = ir.value_fields(p.left) + ir.value_fields(p.right)
            body = self._cmp(p)
            return self._guarded(fields, self._stat_presence(p.left) + self._stat_presence(p.right), body)
        if isinstance(p, ir.PIn):
            sp = self.sets.get(p.key())
            tests = [self._set_lookup(sp)] if sp else []
            tests += [self._item(p.value, it) for it in (sp.inline if sp else p.items)]
            return self._guarded(ir.value_fields(p.value), self._stat_presence(p.value), f"({' || '.join(tests)})")
        raise AssertionError(p)

    def _guarded(self, fields, stat_has, body: str) -> str:
        conds = [c for c in [self.presence(fields)] if c] + stat_has
        return "(" + " && ".join(conds + [body]) + ")"

    def _cmp(self, p: ir.PCmp) -> str:
        left, right, op = p.left, p.right, p.op
        kind = _kind(left)
        if kind in (Kind.IP, Kind.IP6, Kind.IP4, Kind.MAC):
            eq = self._addr_eq(left, right)
            return eq if op == "==" else f"!{eq}"
        return f"({self.value(left)} {op} {self.value(right)})"

    # addresses ---------------------------------------------------------------------
    def _addr_eq(self, left: ir.Value, right: ir.Value) -> str:
        if isinstance(right, ir.VConst):
            return self._addr_match(left.field, right.value, len(right.value) * 8)
        # field == field (same kind): compare byte by byte
        a, b = _addr_bytes(left.field), _addr_bytes(right.field)
        return "(" + " && ".join(f"{a}[{i}] == {b}[{i}]" for i in range(left.field.nbytes)) + ")"

    def _addr_match(self, f: Field, packed: bytes, plen: int) -> str:
        """The field's address equals ``packed`` in its first ``plen`` bits."""
        kind = f.kind
        if kind == Kind.MAC:
            b = _addr_bytes(f)
            return "(" + " && ".join(f"{b}[{i}] == 0x{packed[i]:02x}" for i in range(6)) + ")"
        words = _addr_words(f)
        parts = []
        for i, w in enumerate(words):
            bits = min(max(plen - 32 * i, 0), 32)
            if bits == 0:
                continue
            mask = ((1 << bits) - 1) << (32 - bits)
            val = int.from_bytes(packed[4 * i:4 * i + 4], "big") & mask
            if bits == 32:
                parts.append(f"bpf_ntohl({w}) == 0x{val:08x}U")
            else:
                parts.append(f"(bpf_ntohl({w}) & 0x{mask:08x}U) == 0x{val:08x}U")
        return "(" + " && ".join(parts or ["1"]) + ")"

    def _set_lookup(self, sp) -> str:
        """One lookup in the set's map (a GNU statement expression: it needs a key on the stack)."""
        f = sp.field
        if sp.kind == "lpm":
            n = f.nbytes
            return (f"({{ struct xm_lpm{n} k = {{ .prefixlen = {8 * n} }}; "
                    f"__builtin_memcpy(k.addr, {_addr_bytes(f)}, {n}); {sp.name}.lookup(&k) != 0; }})")
        if sp.kind == "array":
            return f"({{ __u32 k = {self.value(ir.VField(f))}; __u8 *m = {sp.name}.lookup(&k); m && *m; }})"
        if f.kind == Kind.MAC:
            return (f"({{ __u8 k[6]; __builtin_memcpy(k, {_addr_bytes(f)}, 6); "
                    f"{sp.name}.lookup((void *)k) != 0; }})")
        return f"({{ __u64 k = {self.value(ir.VField(f))}; {sp.name}.lookup(&k) != 0; }})"

    def _item(self, value: ir.Value, it: ir.SetItem) -> str:
        if it.kind == "range":
            v = self.value(value)
            return f"({v} >= {it.lo}ULL && {v} <= {it.hi}ULL)"
        if it.kind == "prefix":
            return self._addr_match(value.field, it.lo, it.hi)
        if isinstance(it.lo, bytes):
            return self._addr_match(value.field, it.lo, len(it.lo) * 8)
        return f"({self.value(value)} == {it.lo}ULL)"


def _kind(v: ir.Value) -> Kind:
    if isinstance(v, ir.VField):
        return v.field.kind
    if isinstance(v, ir.VConst):
        return v.kind
    return Kind.INT


def _addr_bytes(f: Field) -> str:
    """A C expression of the field's address as a byte array."""
    e = c_fields.expr(f.name)
    if f.kind == Kind.IP4:                 # p->src.w[3]: its bytes are src.b[12..15]
        base = e.rsplit(".w[3]", 1)[0]
        return f"({base}.b + 12)"
    return e


def _addr_words(f: Field) -> list[str]:
    """C expressions of the field's address as big-endian 32-bit words."""
    e = c_fields.expr(f.name)
    if f.kind == Kind.IP4:
        return [e]
    base = e.rsplit(".b", 1)[0]
    return [f"{base}.w[{i}]" for i in range(4)]
