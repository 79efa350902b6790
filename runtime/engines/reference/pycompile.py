"""The merged IR compiled to ONE Python function per program: the reference
engine's per-packet step.

compiler/codegen.py prints the program plan (compiler/plan.py: layouts, counters,
gates, statistic reads, action ids) as C; this module prints the same plan as
Python source with the same semantics, statement for statement:

* parse (runtime/engines/reference/pyparse.py, the C parser's rules) into storage
  variables named after ``struct xm_pkt``;
* count the frame and its parse outcome; refresh the enable mask (xm_enabled);
* every phase-1 predicate once, in id order, those only on-demand apps use under
  their enable bits (else 0, as the C's zeroed P[]);
* every map of the plan (codegen_templates/t2.c.j2): fused maps (upsert with the map's
  full policy, slots with their own window epochs), track tables, unkeyed HyperLogLog and
  count-min sketches;
* the T3 block of every app with rules: statistic reads, phase-3 predicates,
  rules and their actions (rate limiters, ring buffers, enable).

The source is compiled once, at engine construction: no IR is walked per packet.
Integers follow the C's unsigned 64-bit rules: ``+``/``*`` wrap, ``-`` saturates,
``/`` by zero is 0. ``PyProgram.source`` (and ``ReferenceEngine.source``) is
printable for debugging.

Where the generated C does something surprising (documented in the engine's
module docstring and the report), this module does the same on purpose: the C
is the truth the reference reproduces.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from compiler import abi, c_fields, ir
from compiler import layout as L
from compiler import plan as P
from dsl.fields import FIELDS, Kind

from . import pyparse

M64 = (1 << 64) - 1
CMS_COUNT = abi.CMS_COUNT_MASK
TRACK_NB = abi.TRACK_BUCKETS
BIT = c_fields.LAYER_BITS

_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}


# ---- byte layouts ---------------------------------------------------------------------

def struct_format(st: L.Struct) -> tuple[str, list[L.Member]]:
    """A ``struct`` format packing ``st`` exactly (explicit padding, little-endian)
    and the members whose values it takes, in order."""
    fmt = ["<"]
    cur = 0
    vals = []
    for m in sorted(st.members, key=lambda m: m.offset):
        if m.offset > cur:
            fmt.append(f"{m.offset - cur}x")
        if m.role == "pad":
            fmt.append(f"{m.size}x")
        elif "[" in m.ctype:
            if m.role in ("hist", "last_hist"):
                fmt.append(f"{m.count}Q")
            else:
                fmt.append(f"{m.size}s")
            vals.append(m)
        else:
            fmt.append(_INT[m.size])
            vals.append(m)
        cur = m.offset + m.size
    if st.size > cur:
        fmt.append(f"{st.size - cur}x")
    f = "".join(fmt)
    assert struct.calcsize(f) == st.size, (st.name, f, st.size)
    return f, vals


@dataclass
class ValuePlan:
    """A fused map's value as a Python list: one element per non-pad member
    (hist: a list of counts; HLL registers: a bytearray)."""
    struct: L.Struct
    index: dict[str, int]
    new: str                 # Python source of a fresh (all-zero) value
    pack_src: str            # Python source of a lambda packing a value to bytes


def value_plan(vs: L.Struct, sname: str) -> ValuePlan:
    idx: dict[str, int] = {}
    init = []
    args = []
    fmt, vals = struct_format(vs)
    for m in vals:
        i = len(init)
        idx[m.name] = i
        if m.role in ("hist", "last_hist"):
            init.append(f"[0] * {m.count}")
            args.append(f"*v[{i}]")
        elif m.role == "hll_regs":
            init.append(f"bytearray({m.count})")
            args.append(f"bytes(v[{i}])")
        else:
            init.append("0")
            args.append(f"v[{i}]")
    # (a value of no slots is the pad member "_unused": the list is empty, the bytes zeros)
    return ValuePlan(vs, idx, "[" + ", ".join(init) + "]", f"lambda v: {sname}.pack({', '.join(args)})")


# ---- expressions -------------------------------------------------------------------------

def presence_mask(fields) -> int:
    return sum({BIT[f.layer] for f in fields if f.layer != "pkt"})


def presence(fields) -> str | None:
    """Python test of the layers of ``fields`` (None: always present)."""
    mask = presence_mask(fields)
    if not mask:
        return None
    if mask & (mask - 1):
        return f"(L & {mask}) == {mask}"
    return f"(L & {mask})"


def presence_u8(fields) -> str:
    """The C's ``__u8 ok = (presence) != 0``: 1 when every layer of ``fields`` is present."""
    mask = presence_mask(fields)
    if not mask:
        return "1"
    return f"(1 if (L & {mask}) == {mask} else 0)"


def fexpr(f) -> str:
    return pyparse.field_expr(f.name if not isinstance(f, str) else f)


def _addr_words(field) -> int:
    return 1 if field.kind == Kind.IP4 else 4


def addr_match(field, packed: bytes, plen: int) -> str:
    """``field``'s address equals ``packed`` in its first ``plen`` bits (as the C's
    _addr_match: MACs compare all 6 bytes; addresses word by word)."""
    b = fexpr(field)
    if field.kind == Kind.MAC:
        return f"({b} == {bytes(packed[:6])!r})"
    nwords = _addr_words(field)
    nbytes = 4 * nwords
    packed = bytes(packed) + bytes(max(0, nbytes - len(packed)))
    bits = min(max(plen, 0), 32 * nwords)
    if bits == 0:
        return "True"
    if bits % 8 == 0:
        n = bits // 8
        if n == nbytes:
            return f"({b} == {packed[:nbytes]!r})"
        return f"({b}[:{n}] == {packed[:n]!r})"
    mask = ((1 << bits) - 1) << (8 * nbytes - bits)
    val = int.from_bytes(packed[:nbytes], "big") & mask
    return f"((int.from_bytes({b}, 'big') & {mask:#x}) == {val:#x})"


class PyExpr:
    """IR values and predicates as Python expressions over the storage variables
    (compiler/cexpr.py's rules, in Python)."""

    def __init__(self, params: dict, stat_reads: dict | None = None, size_reads: dict | None = None,
                 sets: dict | None = None):
        self.params = params
        self.sets = sets or {}                  # pred key -> (compiler.plan.SetPlan, name bound in ns)
        self.stat_reads = stat_reads or {}      # vkey -> (X name, H name)
        self.size_reads = size_reads or {}      # (app, stat) -> Python expr

    def value(self, v) -> str:
        if isinstance(v, ir.VField):
            return fexpr(v.field)
        if isinstance(v, ir.VConst):
            if isinstance(v.value, bool):
                return "1" if v.value else "0"
            return str(int(v.value))
        if isinstance(v, ir.VParam):
            return f"PAR[{self.params[(v.app, v.name)]}]"
        if isinstance(v, ir.VStat):
            return self.stat_reads[ir.vkey(v)][0]
        if isinstance(v, ir.VSize):
            return self.size_reads[(v.app, v.stat)]
        if isinstance(v, ir.VArith):
            a, b = self.value(v.left), self.value(v.right)
            if v.op == "-":
                return f"SUB({a}, {b})"
            if v.op == "/":
                return f"DIV({a}, {b})"
            return f"(({a} {v.op} {b}) & M64)"
        raise AssertionError(v)

    def _stat_has(self, v) -> list[str]:
        if isinstance(v, ir.VStat):
            return [self.stat_reads[ir.vkey(v)][1]]
        if isinstance(v, ir.VArith):
            return self._stat_has(v.left) + self._stat_has(v.right)
        return []

    def pred(self, p) -> str:
        if isinstance(p, ir.PTrue):
            return "1"
        if isinstance(p, ir.PFalse):
            return "0"
        if isinstance(p, ir.PRef):
            return f"P{p.id}"
        if isinstance(p, ir.PLayer):
            return f"(L & {BIT[p.layer]})"
        if isinstance(p, ir.PAnd):
            return "(" + " and ".join(self.pred(o) for o in p.operands) + ")"
        if isinstance(p, ir.POr):
            return "(" + " or ".join(self.pred(o) for o in p.operands) + ")"
        if isinstance(p, ir.PNot):
            return f"(not {self.pred(p.operand)})"
        if isinstance(p, ir.PCmp):
            fields = ir.value_fields(p.left) + ir.value_fields(p.right)
            return self._guarded(fields, self._stat_has(p.left) + self._stat_has(p.right), self._cmp(p))
        if isinstance(p, ir.PIn):
            found = self.sets.get(p.key())
            if found:                           # one membership test, as the C's one lookup
                sp, name = found
                tests = [f"IN_PREFIXES({fexpr(p.value.field)}, {name})" if sp.kind == "lpm"
                         else f"({self.value(p.value)} in {name})"]
                tests += [self._item(p.value, it) for it in sp.inline]
            else:
                tests = [self._item(p.value, it) for it in p.items]
            return self._guarded(ir.value_fields(p.value), self._stat_has(p.value), f"({' or '.join(tests)})")
        raise AssertionError(p)

    def _guarded(self, fields, has, body) -> str:
        conds = [c for c in [presence(fields)] if c] + has
        return "(" + " and ".join(conds + [body]) + ")"

    def _cmp(self, p) -> str:
        left, right, op = p.left, p.right, p.op
        kind = left.field.kind if isinstance(left, ir.VField) else (left.kind if isinstance(left, ir.VConst) else Kind.INT)
        if kind in (Kind.IP, Kind.IP6, Kind.IP4, Kind.MAC):
            if isinstance(right, ir.VConst):
                eq = addr_match(left.field, right.value, len(right.value) * 8)
            else:
                n = left.field.nbytes
                eq = f"({fexpr(left.field)}[:{n}] == {fexpr(right.field)}[:{n}])"
            return eq if op == "==" else f"(not {eq})"
        return f"({self.value(left)} {op} {self.value(right)})"

    def _item(self, value, it) -> str:
        if it.kind == "range":
            return f"({it.lo} <= {self.value(value)} <= {it.hi})"
        if it.kind == "prefix":
            return addr_match(value.field, it.lo, it.hi)
        if isinstance(it.lo, bytes):
            return addr_match(value.field, it.lo, len(it.lo) * 8)
        return f"({self.value(value)} == {int(it.lo)})"


# ---- large sets (compiler/plan.py: set_plans) ------------------------------------------------

def set_members(sp):
    """What a set's map holds, as Python: {prefix length: {top bits}} for an LPM
    trie, else the frozenset of member values (a byte array's ranges expanded)."""
    if sp.kind == "lpm":
        nbits = 8 * sp.field.nbytes
        table: dict[int, set] = {}
        for it in sp.members:
            plen = it.hi if it.kind == "prefix" else 8 * len(it.lo)
            table.setdefault(plen, set()).add(int.from_bytes(it.lo, "big") >> (nbits - plen))
        return PrefixTable(nbits, {k: frozenset(v) for k, v in sorted(table.items())})
    vals = set()
    for it in sp.members:
        if it.kind == "range":
            vals.update(range(it.lo, min(it.hi, sp.entries - 1) + 1))
        else:
            vals.add(bytes(it.lo) if isinstance(it.lo, bytes) else int(it.lo))
    return frozenset(vals)


class PrefixTable:
    """Prefixes by length: the top bits of each (an LPM trie's content)."""

    def __init__(self, nbits: int, by_len: dict[int, frozenset]):
        self.nbits, self.by_len = nbits, by_len


def in_prefixes(addr: bytes, table: PrefixTable) -> bool:
    """Whether ``addr`` is in one of the prefixes (what one LPM trie lookup tells)."""
    a = int.from_bytes(addr, "big")
    return any((a >> (table.nbits - plen)) in tops for plen, tops in table.by_len.items())


# ---- the program ------------------------------------------------------------------------------

class _Code:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, ind: int, text: str) -> None:
        self.lines.append("    " * ind + text)

    def extend(self, lines) -> None:
        self.lines.extend(lines)


class PyProgram:
    """Python source of the per-packet function of a program, plus what the engine
    must provide in its namespace (packers, value plans, layouts)."""

    def __init__(self, plan: P.Plan, linear: int = 3504):
        prog = plan.prog
        self.plan = plan
        self.prog = prog
        self.linear = linear
        self.params = plan.param_index()
        self.ns: dict = {}                  # name -> object the engine binds (packers etc.)
        self.value_plans: dict[str, ValuePlan] = {}
        self.used_fields: set[str] = set()
        for m in plan.maps:
            if m.value is not None:
                self.value_plans[m.name] = value_plan(m.value, f"VS_{m.name}")
                self.ns[f"VS_{m.name}"] = struct.Struct(struct_format(m.value)[0])
        self.ringbuf_bytes = plan.ringbuf_bytes
        self.sets: dict = {}                # pred key -> (SetPlan, its name in ns)
        if plan.sets:
            self.ns["IN_PREFIXES"] = in_prefixes
        for sp in plan.sets:
            self.sets[sp.pred.key()] = (sp, f"SET_{sp.name}")
            self.ns[f"SET_{sp.name}"] = set_members(sp)
        self.source = self._render()

    # ---- helpers ----------------------------------------------------------------------
    @staticmethod
    def gate(g: P.Gate) -> str | None:
        return f"(en & {g.mask})" if g else None

    def slot_cond(self, sp: P.SlotPlan) -> str:
        g = self.gate(sp.gate)
        return f"(P{sp.slot.guard} and {g})" if g else f"P{sp.slot.guard}"

    def packer(self, name: str, st: L.Struct) -> str:
        """Register a struct packer for ``st`` as ``name``; returns the name."""
        if name not in self.ns:
            self.ns[name] = struct.Struct(struct_format(st)[0]).pack
        return name

    def key_args(self, st: L.Struct, mapping: dict | None = None) -> str:
        """Arguments packing struct ``st`` from the packet's storage (codegen.key_fill);
        with ``mapping`` (key member field -> source field) as _read_stat fills keys."""
        _, vals = struct_format(st)
        out = []
        for mem in vals:
            if mem.role != "field":
                raise AssertionError(mem)
            if mapping is None:
                src = FIELDS[mem.field]
                self.used_fields.add(src.name)
                out.append(fexpr(src))
                continue
            src = mapping[mem.field]
            self.used_fields.add(src.name)
            if "[" not in mem.ctype:
                e = fexpr(src)
                if c_fields.c_field(src.name).nbytes > mem.size:
                    e = f"({e} & {(1 << (8 * mem.size)) - 1})"
                out.append(e)
            elif src.kind == Kind.IP4 and mem.kind == "ip":
                out.append(f"(V4P + {fexpr(src)})")
            else:
                out.append(fexpr(src))
        return ", ".join(out)

    # ---- the function ----------------------------------------------------------------------
    def _render(self) -> str:
        prog = self.prog
        # T1 predicates (phase 1), by the plan's gate blocks
        preds = _Code()
        cx = PyExpr(self.params, sets=self.sets)
        gated: list[str] = []      # computed only under an enable bit: else 0 (P[] is zeroed)
        for b in self.plan.pred_blocks:
            gate = self.gate(b.gate)
            ind = 1
            if gate:
                preds(1, f"if {gate}:")
                ind = 2
            for n in b.preds:
                if gate:
                    gated.append(f"P{n.id}")
                preds(ind, f"P{n.id} = {cx.pred(n.pred)}")
                self._collect_fields_pred(n.pred)
        # P[] starts zeroed: predicates computed only under an enable bit read 0 when
        # it is off (phase-3 ones are always assigned before use, in their T3 block)
        zero_preds = gated
        t2 = _Code()
        for m in self.plan.maps:
            t2(1, f"# {m.name}: {m.kind} map, key ({', '.join(f.name for f in m.map.key) or 'none'})")
            getattr(self, f"_{m.kind}")(m, t2)
        t3 = _Code()
        for t in self.plan.t3:
            self._t3_app(t, t3)

        keep = pyparse.storage_of(self.used_fields)
        keep.add("ip_proto")
        if self.plan.blocklist_code:
            keep.add("src")                            # the blocklist's key
        lines = ["def run(ts, data, plen):"]          # plen: the length on the wire (pkt.len)
        lines.append("    end = len(data)")
        lines.append(f"    if end > {self.linear}:")
        lines.append(f"        end = {self.linear}")
        lines.append(f"    L = {BIT['pkt']}")
        lines.append("    outcome = 0")
        for v, z in pyparse.STORAGE.items():
            if v in keep:
                lines.append(f"    {v} = {z}")
        lines += pyparse.render(prog.layers, abi.IPV6_EXT_MAX, keep, 1)
        lines.append("    C[1 + (outcome & 31)] += 1       # (frames, verdict.pass: derived, as from the kernel)")
        lines += self._filters()
        lines.append("    if ts >= CTL[1]:")
        lines.append("        REFRESH(ts)")
        lines.append("    en = CTL[0]")
        for w in self.plan.windows:
            lines.append(f"    ep_{w} = ts // {w} + 1")
        if zero_preds:
            lines.append("    " + " = ".join(zero_preds) + " = 0")
        lines += preds.lines
        lines += t2.lines
        lines += t3.lines
        lines.append("    return 2")
        return "\n".join(lines) + "\n"

    def _filters(self) -> list[str]:
        """xm_count_iface() and the blocklist (xm_blocked()), before any app. IFC: the
        interfaces user space counts (ifindex -> [frames, bytes]); the program runs on
        TEST_RUN_IFINDEX. FLT: the filter state [entries, flags, trie_longest, lens];
        BLOCKED(addr16, ts, ipv4): the entry xm_blocked() finds (BlockMaps.lookup:
        [expires, hits, prefixlen])."""
        plan = self.plan
        out = ["    ifc = IFC.get(TEST_RUN_IFINDEX)",
               "    if ifc is not None:",
               "        ifc[0] += 1",
               "        ifc[1] += plen"]
        if not plan.blocklist_code:
            return out
        out += [f"    if FLT[0] and (L & {BIT['ip']}):",
                f"        b = BLOCKED(src, ts, L & {BIT['ipv4']})",
                "        if b is not None and b[0] > ts:",
                "            b[1] += 1",
                f"            if FLT[1] & {abi.FILTER_ENFORCE}:",
                f"                C[{plan.counter('blocklist.dropped')}] += 1",
                f"                C[{plan.counter('verdict.drop')}] += 1",
                "                return 1",
                f"            C[{plan.counter('blocklist.logged')}] += 1"]
        return out

    def _collect_fields_pred(self, p) -> None:
        for v in P.pred_values(p):
            for x in P.walk_values(v):
                if isinstance(x, ir.VField):
                    self.used_fields.add(x.field.name)
                elif isinstance(x, ir.VStat):
                    self.used_fields.update(f.name for f in x.key)
        if isinstance(p, ir.PIn) and isinstance(p.value, ir.VField):
            self.used_fields.add(p.value.field.name)
        if isinstance(p, ir.PCmp):
            for side in (p.left, p.right):
                if isinstance(side, ir.VField):
                    self.used_fields.add(side.field.name)

    # ---- maps --------------------------------------------------------------------------------
    def _arg(self, f) -> str:
        self.used_fields.add(f.name)
        return fexpr(f)

    def _fused(self, mp: P.MapPlan, c: _Code) -> None:
        m = mp.map
        vp = self.value_plans[m.name]
        conds = {sp.name: self.slot_cond(sp) for sp in mp.slots}
        anyc = " or ".join(dict.fromkeys(conds.values()))
        pres = presence(list(m.key))
        test = f"{pres} and ({anyc})" if pres else anyc
        c(1, f"if {test}:")
        if m.key:
            pk = self.packer(f"PK_{m.name}", mp.key)
            c(2, f"_k = {pk}({self.key_args(mp.key)})")
            c(2, f"v = M_{m.name}.get(_k)")
            if m.on_full == "lru":
                c(2, "if v is None:")
                c(3, f"if len(M_{m.name}) >= {m.size}:")
                c(4, f"M_{m.name}.popitem(last=False)   # evict the least recently used")
                c(3, f"v = M_{m.name}[_k] = {vp.new}")
                c(2, "else:")
                c(3, f"M_{m.name}.move_to_end(_k)")
            else:
                c(2, "if v is None:")
                c(3, f"if len(M_{m.name}) < {m.size}:")
                c(4, f"v = M_{m.name}[_k] = {vp.new}")
                c(3, "else:")
                c(4, f"C[{mp.insert_failed}] += 1")
            c(2, "if v is not None:")
            ind = 3
        else:
            c(2, f"v = V_{m.name}")
            ind = 2
        idx = vp.index
        for sp in mp.slots:
            s = sp.slot
            w = s.window_ns
            c(ind, f"if {conds[s.name]}:   # {s.name}: {s.func}({', '.join(a.name for a in s.args)})")
            i = ind + 1
            if w is not None:
                e = idx[L.epoch_member(s.name)]
                c(i, f"if v[{e}] != ep_{w}:   # another window (the slot's own marker): keep the last, reset")
                c(i + 1, f"_keep = v[{e}] == ep_{w} - 1")
                if s.func == "hist":
                    cur, last = idx[s.name], idx[L.last_member(s.name)]
                    c(i + 1, f"v[{last}] = v[{cur}] if _keep else [0] * {sp.hist_buckets}")
                    c(i + 1, f"v[{cur}] = [0] * {sp.hist_buckets}")
                elif s.func == "distinct":
                    for mb in (s.name + "_z", s.name + "_zeros"):
                        c(i + 1, f"v[{idx[L.last_member(mb)]}] = v[{idx[mb]}] if _keep else 0")
                    c(i + 1, f"v[{idx[s.name + '_regs']}] = bytearray({sp.hll.registers})")
                    c(i + 1, f"v[{idx[s.name + '_z']}] = 0   # z re-initialised on first update")
                else:
                    c(i + 1, f"v[{idx[L.last_member(s.name)]}] = v[{idx[s.name]}] if _keep else 0")
                    c(i + 1, f"v[{idx[s.name]}] = 0")
                c(i + 1, f"v[{e}] = ep_{w}")
            self._update(sp, idx, c, i)

    def _update(self, sp: P.SlotPlan, idx: dict, c: _Code, ind: int) -> None:
        s = sp.slot
        if s.func == "count":
            c(ind, f"v[{idx[s.name]}] += 1")
            return
        pres = presence(list(s.args))
        if pres:
            c(ind, f"if {pres}:")
            ind += 1
        if s.func == "sum":
            c(ind, f"v[{idx[s.name]}] = (v[{idx[s.name]}] + {self._arg(s.args[0])}) & M64")
        elif s.func == "max":
            c(ind, f"_x = {self._arg(s.args[0])}")
            c(ind, f"if _x > v[{idx[s.name]}]:")
            c(ind + 1, f"v[{idx[s.name]}] = _x")
        elif s.func == "min":
            c(ind, f"_x = {self._arg(s.args[0])} ^ M64   # stored as ~min: 0 = none")
            c(ind, f"if _x > v[{idx[s.name]}]:")
            c(ind + 1, f"v[{idx[s.name]}] = _x")
        elif s.func == "hist":
            c(ind, f"_b = ({self._arg(s.args[0])}).bit_length()")
            c(ind, f"if _b < {sp.hist_buckets}:")
            c(ind + 1, f"v[{idx[s.name]}][_b] += 1")
        elif s.func == "distinct":
            regs = sp.hll.registers
            pk = self.packer(f"PH_{s.name}", sp.hash_key)
            self._hll_hasher(sp)
            z, zs, rg = idx[s.name + "_z"], idx[s.name + "_zeros"], idx[s.name + "_regs"]
            c(ind, f"_i, _r = HX_{s.name}({pk}({self.key_args(sp.hash_key)}))")
            c(ind, f"if v[{z}] == 0:")
            c(ind + 1, f"v[{z}] = {regs << abi.HLL_SCALE_BITS}")
            c(ind + 1, f"v[{zs}] = {regs}")
            c(ind, f"_regs = v[{rg}]")
            c(ind, "_old = _regs[_i]")
            c(ind, "if _r > _old:")
            c(ind + 1, "_regs[_i] = _r")
            c(ind + 1, f"v[{z}] = (v[{z}] - POW[_old] + POW[_r]) & M64")
            c(ind + 1, "if _old == 0:")
            c(ind + 2, f"v[{zs}] = (v[{zs}] - 1) & M64")
            self._estimator(sp)
            c(ind + 1, f"v[{idx[s.name + '_est']}] = EST_{s.name}(v[{z}], v[{zs}])   # kept as a register grows")
        else:
            raise AssertionError(s.func)

    def _hll_hasher(self, sp: P.SlotPlan) -> None:
        """HX_<slot>(hash key bytes) -> (register index, rank), cached by key."""
        h = sp.hll
        self.ns.setdefault(f"HX_{sp.name}", ("hll", h.registers - 1, h.log2m, h.rank_max))

    def _track(self, mp: P.MapPlan, c: _Code) -> None:
        m = mp.map
        t = m.track
        bucket_ns = mp.track.bucket_ns
        pres = presence(list(m.key))
        test = f"(P{t.open_guard} or P{t.close_guard})"
        gate = self.gate(mp.track.gate)
        if gate:
            test = f"{gate} and {test}"
        if pres:
            test = f"{pres} and {test}"
        pk = self.packer(f"PK_{m.name}", mp.key)
        T = f"M_{m.name}"
        c(1, f"if {test}:")
        c(2, f"_k = {pk}({self.key_args(mp.key)})")
        c(2, f"_b = ts // {bucket_ns}   # buckets of expire/{TRACK_NB}")
        c(2, f"if P{t.open_guard}:")
        c(3, f"_t = {T}.get(_k)")
        c(3, f"if _t is None or ((_b - _t[1]) & M64) >= {TRACK_NB}:   # new, or expired: (re)open")
        c(4, "if _t is None:")
        c(5, f"if len({T}) >= {m.size}:")
        c(6, f"{T}.popitem(last=False)   # LRU table: evict the least recently used")
        c(4, "else:")
        c(5, f"{T}.move_to_end(_k)")
        c(4, f"{T}[_k] = [ts, _b]")
        c(4, f"TA_{m.name}(_b, 1)")
        c(3, "else:")
        c(4, f"{T}.move_to_end(_k)")
        c(2, f"if P{t.close_guard}:")
        c(3, f"_t = {T}.pop(_k, None)")
        c(3, "if _t is not None:")
        c(4, f"if ((_b - _t[1]) & M64) < {TRACK_NB}:")
        c(5, f"TA_{m.name}(_t[1], -1)")

    def _hll(self, mp: P.MapPlan, c: _Code) -> None:
        m = mp.map
        sp = mp.slots[0]
        s = sp.slot
        regs = sp.hll.registers
        cond = self.slot_cond(sp)
        pres = presence(list(s.args))
        test = f"{pres} and {cond}" if pres else cond
        ep = f"ep_{s.window_ns}" if s.window_ns else "1"
        pk = self.packer(f"PH_{s.name}", sp.hash_key)
        self._hll_hasher(sp)
        c(1, f"if {test}:")
        c(2, f"_i, _r = HX_{s.name}({pk}({self.key_args(sp.hash_key)}))")
        self._estimator(sp)
        c(2, f"_hd = HD_{m.name}")
        c(2, f"if _hd[0] != {ep}:   # a new window: every register reads 0")
        if s.window_ns:
            c(3, f"_hd[3], _hd[4] = (_hd[1], _hd[2]) if _hd[0] == {ep} - 1 else (0, 0)   # the last window's z, zeros")
        c(3, f"_hd[0] = {ep}")
        c(3, f"_hd[1] = {regs << abi.HLL_SCALE_BITS}")
        c(3, f"_hd[2] = {regs}")
        c(3, f"_hd[5] = EST_{s.name}(_hd[1], _hd[2])")
        c(2, f"_reg = R_{m.name}[_i]")
        c(2, f"_old = (_reg & 0xFF) if (_reg >> 8) == {ep} else 0")
        c(2, "if _r > _old:")
        c(3, f"R_{m.name}[_i] = (({ep} << 8) | _r) & M64")
        c(3, "_hd[1] = (_hd[1] - POW[_old] + POW[_r]) & M64")
        c(3, "if _old == 0:")
        c(4, "_hd[2] = (_hd[2] - 1) & M64")
        c(3, f"_hd[5] = EST_{s.name}(_hd[1], _hd[2])   # the estimate, kept (hdr.est)")

    @staticmethod
    def _cms_tag(s) -> str:
        return f"((ep_{s.window_ns} & {abi.CMS_TAG_MASK:#x}) << {abi.CMS_COUNT_BITS})" if s.window_ns else "0"

    def _cms_indexer(self, sp: P.SlotPlan) -> str:
        self.ns.setdefault(f"CX_{sp.name}", ("cms", sp.cms_width, sp.cms_depth))
        return f"CX_{sp.name}"

    def _cms(self, mp: P.MapPlan, c: _Code) -> None:
        m = mp.map
        sp = mp.slots[0]
        s = sp.slot
        cond = self.slot_cond(sp)
        pres = presence(list(s.args))
        test = f"{pres} and {cond}" if pres else cond
        pk = self.packer(f"PH_{s.name}", sp.hash_key)
        cx = self._cms_indexer(sp)
        c(1, f"if {test}:")
        c(2, f"_tag = {self._cms_tag(s)}")
        c(2, f"for _i in {cx}({pk}({self.key_args(sp.hash_key)})):")
        c(3, f"_c = CM_{m.name}[_i]")
        c(3, f"if (_c & {M64 ^ CMS_COUNT:#x}) == _tag:")
        c(4, f"CM_{m.name}[_i] = (_c + 1) & M64")
        c(3, "else:")
        c(4, f"CM_{m.name}[_i] = _tag | 1   # a new window (a sketch's last window is not kept)")

    # ---- T3 ----------------------------------------------------------------------------------
    def _t3_app(self, t: P.T3Plan, c: _Code) -> None:
        a = self.plan.app(t.app)
        gate = self.gate(t.gate)
        sel = f"P{t.select}" if t.select is not None else "1"
        cond = f"{gate} and {sel}" if gate else sel
        c(1, f"# t3 of {t.app}")
        c(1, f"if {cond}:")
        ind = 2
        reads: dict = {}
        for r in t.reads:
            var, has = f"X{r.index}", f"H{r.index}"
            reads[ir.vkey(r.value)] = (var, has)
            c(ind, f"{var} = 0")
            c(ind, f"{has} = 0")
            self._read_stat(r, var, has, c, ind)
        size_exprs = {(sz.app, sz.stat): f"TS_{sz.map}(ts // {sz.bucket_ns})" for sz in t.sizes}
        cx = PyExpr(self.params, reads, size_exprs, sets=self.sets)
        for n in t.preds:
            self._collect_fields_pred(n.pred)
            c(ind, f"P{n.id} = {cx.pred(n.pred)}")
        for rp in t.rules:
            c(ind, f"if P{rp.rule.cond}:   # rule {rp.rule.id}")
            c(ind + 1, f"C[{rp.fired}] += 1")
            for ap in rp.actions:
                self._action(a, ap, c, ind + 1)

    def _read_stat(self, r: P.StatReadPlan, var, has, c: _Code, ind: int) -> None:
        mp = self.plan.map(r.map)
        m = mp.map
        sp = mp.slot(r.slot)
        slot = sp.slot
        if m.kind == "hll":
            ep = f"ep_{slot.window_ns}" if slot.window_ns else "1"
            self._estimator(sp)
            c(ind, f"{has} = 1")
            c(ind, f"if HD_{m.name}[0] == {ep}:")
            c(ind + 1, f"{var} = HD_{m.name}[5]   # hdr.est, kept by T2")
            return
        if m.kind == "cms":
            pres = presence(list(slot.args))
            pk = self.packer(f"PH_{slot.name}", sp.hash_key)
            cx = self._cms_indexer(sp)
            c(ind, f"if {pres or '1'}:")
            c(ind + 1, f"{has} = 1")
            c(ind + 1, f"_tag = {self._cms_tag(slot)}")
            c(ind + 1, f"{var} = M64")
            c(ind + 1, f"for _i in {cx}({pk}({self.key_args(sp.hash_key)})):")
            c(ind + 2, f"_c = CM_{m.name}[_i]")
            c(ind + 2, f"_n = (_c & {CMS_COUNT:#x}) if (_c & {M64 ^ CMS_COUNT:#x}) == _tag else 0")
            c(ind + 2, f"if _n < {var}:")
            c(ind + 3, f"{var} = _n")
            return
        pname = "_" + r.ptr
        if r.first_of_ptr and m.key:
            pk = self.packer(f"PK_{m.name}", mp.key)
            c(ind, f"{pname} = None")
            c(ind, f"{pname}_ok = {presence_u8(list(r.value.key))}")
            c(ind, f"if {pname}_ok:")
            c(ind + 1, f"_k = {pk}({self.key_args(mp.key, dict(r.key_sources))})")
            c(ind + 1, f"{pname} = M_{m.name}.get(_k)")
            if m.on_full == "lru":
                c(ind + 1, f"if {pname} is not None:")
                c(ind + 2, f"M_{m.name}.move_to_end(_k)")
        elif r.first_of_ptr:
            c(ind, f"{pname} = V_{m.name}")
            c(ind, f"{pname}_ok = 1")
        read = self._slot_read(mp, sp, pname)
        c(ind, f"if {pname}_ok:")
        c(ind + 1, f"{has} = 1")
        c(ind + 1, f"if {pname} is not None:")
        c(ind + 2, f"{var} = {read}")

    def _estimator(self, sp: P.SlotPlan) -> None:
        h = sp.hll
        self.ns.setdefault(f"EST_{sp.name}", ("est", h.registers, h.am2, h.log2m_fp))

    def _slot_read(self, mp: P.MapPlan, sp: P.SlotPlan, ptr: str) -> str:
        idx = self.value_plans[mp.name].index
        s = sp.slot
        if s.func == "distinct":
            # z == 0: never updated (a key of another slot of this map): 0 distinct; else the
            # estimate T2 keeps
            z = f"{ptr}[{idx[s.name + '_z']}]"
            val = f"({ptr}[{idx[s.name + '_est']}] if {z} else 0)"
        elif s.func == "min":
            val = f"(({ptr}[{idx[s.name]}] ^ M64) if {ptr}[{idx[s.name]}] else 0)"
        else:
            val = f"{ptr}[{idx[s.name]}]"
        if s.window_ns:
            return f"({val} if {ptr}[{idx[L.epoch_member(s.name)]}] == ep_{s.window_ns} else 0)"
        return val

    def _action(self, a: P.AppPlan, ap: P.ActionPlan, c: _Code, ind: int) -> None:
        act = ap.action
        if ap.enable_bit >= 0:
            c(ind, f"if ENABLE({ap.enable_bit}, (ts + {act.duration_ns}) & M64):   # enable {act.app}: it was off")
            self._emit(ap.event, a, c, ind + 1)
            return
        lim = act.limit
        lidx = ap.limiter
        c(ind, f"_t = RL[{lidx}]   # limit {lim.text}")
        c(ind, "if _t < ts:")
        c(ind + 1, "_t = ts")
        c(ind, f"if ((_t - ts + {lim.interval_ns}) & M64) <= {lim.per_ns}:")
        c(ind + 1, f"RL[{lidx}] = (_t + {lim.interval_ns}) & M64")
        self._emit(ap.event, a, c, ind + 1)
        c(ind, "else:")
        c(ind + 1, f"C[{a.rate_limited}] += 1")

    def _emit(self, ev: P.EventPlan, a: P.AppPlan, c: _Code, ind: int) -> None:
        st = ev.record
        _, vals = struct_format(st)
        pk = self.packer(f"PE_{ev.action}", st)
        args = []
        for mem in vals:
            if mem.role == "ts":
                args.append("ts")
            elif mem.role == "action":
                args.append(str(ev.action))
            elif mem.role == "rule":
                args.append(str(ev.rule))
            else:
                self.used_fields.add(mem.field)
                f = FIELDS[mem.field]
                zero = f"b'\\x00' * {mem.size}" if "[" in mem.ctype else "0"
                if f.layer == "pkt":
                    args.append(fexpr(f))
                else:   # the C sends an absent field as zeros
                    args.append(f"({fexpr(f)} if (L & {BIT[f.layer]}) else {zero})")
        rec_len = (st.size + 8 + 7) // 8 * 8       # ring buffer record: 8-byte header, 8-aligned
        c(ind, f"if RBU[0] + {rec_len} < {self.ringbuf_bytes}:   # ring buffer {a.ringbuf} has room")
        c(ind + 1, f"RBU[0] += {rec_len}")
        c(ind + 1, f"RBQ[0].append(DEC({pk}({', '.join(args)})))")
        c(ind + 1, f"C[{a.events}] += 1")
        c(ind, "else:")
        c(ind + 1, f"C[{a.ringbuf_full}] += 1")
