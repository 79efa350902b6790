"""The merged IR: every app of a deployment in one structure.

Built from the checked model by compiler/lower.py, then rewritten by the passes
in compiler/passes/ (normalise and intern predicates, share and fuse
statistics, collect parse layers). Code generation, the manifest and the
reference interpreter all read this structure and nothing earlier.

Values (``V*``) are expressions over one packet: fields, constants, params,
statistic values. Predicates are interned in ``ProgramIR.preds``: each distinct
predicate has one id and is evaluated at most once per packet.

``dump()`` prints any IR as stable text (``xdpmon compile --dump ir``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dsl.ast import Span
from dsl.fields import Field, Kind


# ---- values ---------------------------------------------------------------------

@dataclass(frozen=True)
class VField:
    field: Field

    def key(self):
        return ("field", self.field.name)


@dataclass(frozen=True)
class VConst:
    kind: Kind
    value: Union[int, bool, bytes]

    def key(self):
        return ("const", self.kind.value, self.value)


@dataclass(frozen=True)
class VParam:
    app: str
    name: str

    def key(self):
        return ("param", self.app, self.name)


@dataclass(frozen=True)
class VStat:
    """``member`` of stat (app, stat), looked up with ``key`` fields of the
    current packet. ``slot`` is filled in by the stat-merging pass."""
    app: str
    stat: str
    member: str
    key: tuple[Field, ...]
    slot: str | None = None

    def key_(self):    # not key(): ``key`` is the field tuple
        return ("stat", self.app, self.stat, self.member, tuple(f.name for f in self.key))


@dataclass(frozen=True)
class VSize:
    app: str
    stat: str
    slot: str | None = None

    def key(self):
        return ("size", self.app, self.stat)


@dataclass(frozen=True)
class VArith:
    op: str                       # "+" "-" "*" "/" or "&" (bitwise and)
    left: "Value"
    right: "Value"

    def key(self):
        return ("arith", self.op, vkey(self.left), vkey(self.right))


Value = Union[VField, VConst, VParam, VStat, VSize, VArith]


def vkey(v: Value):
    """A hashable structural key of a value (for interning)."""
    if isinstance(v, VStat):
        return v.key_()
    return v.key()


def value_fields(v: Value) -> list[Field]:
    """The packet fields a value reads (so their layers must be present)."""
    if isinstance(v, VField):
        return [v.field]
    if isinstance(v, VStat):
        return list(v.key)
    if isinstance(v, VArith):
        return value_fields(v.left) + value_fields(v.right)
    return []


def value_reads_stats(v: Value) -> bool:
    if isinstance(v, (VStat, VSize)):
        return True
    if isinstance(v, VArith):
        return value_reads_stats(v.left) or value_reads_stats(v.right)
    return False


# ---- predicates ------------------------------------------------------------------

@dataclass(frozen=True)
class PTrue:
    def key(self):
        return ("true",)


@dataclass(frozen=True)
class PFalse:
    def key(self):
        return ("false",)


@dataclass(frozen=True)
class PLayer:
    layer: str

    def key(self):
        return ("layer", self.layer)


@dataclass(frozen=True)
class PCmp:
    """``left op right``; false when a field either side reads is absent."""
    op: str
    left: Value
    right: Value

    def key(self):
        return ("cmp", self.op, vkey(self.left), vkey(self.right))


@dataclass(frozen=True)
class SetItem:
    kind: str                 # "eq" | "range" | "prefix"
    lo: Union[int, bytes]
    hi: Union[int, bytes, None] = None     # range upper bound / prefix length

    def key(self):
        return (self.kind, self.lo, self.hi)


@dataclass(frozen=True)
class PIn:
    value: Value
    items: tuple[SetItem, ...]

    def key(self):
        return ("in", vkey(self.value), tuple(i.key() for i in self.items))


@dataclass(frozen=True)
class PAnd:
    operands: tuple["Pred", ...]

    def key(self):
        return ("and",) + tuple(pkey(o) for o in self.operands)


@dataclass(frozen=True)
class POr:
    operands: tuple["Pred", ...]

    def key(self):
        return ("or",) + tuple(pkey(o) for o in self.operands)


@dataclass(frozen=True)
class PNot:
    operand: "Pred"

    def key(self):
        return ("not", pkey(self.operand))


@dataclass(frozen=True)
class PRef:
    """A reference to interned predicate ``id`` (after the interning pass)."""
    id: int

    def key(self):
        return ("ref", self.id)


Pred = Union[PTrue, PFalse, PLayer, PCmp, PIn, PAnd, POr, PNot, PRef]


def pkey(p: Pred):
    return p.key()


@dataclass(frozen=True)
class PredNode:
    """One interned predicate. Operands of and/or/not are PRefs to earlier nodes,
    so ``preds`` is in evaluation order."""
    id: int
    pred: Pred
    users: tuple[str, ...]            # apps that use it
    phase: int                        # 1: packet fields only; 3: reads statistics
    spans: tuple[Span, ...] = ()      # where it was written


# ---- statistics --------------------------------------------------------------------

@dataclass(frozen=True)
class Use:
    """One app's use of a slot: which stat member of which app it is."""
    app: str
    stat: str
    member: str
    span: Span


@dataclass(frozen=True)
class Slot:
    """One aggregate kept in a map value: func(args) under ``guard`` in
    ``window``. Identical slots of several apps are one slot with several uses."""
    name: str                         # derived from identity, e.g. "s_3f2a91"
    func: str                         # count sum min max distinct hist cms
    args: tuple[Field, ...]
    guard: int                        # predicate id (includes the app's T1 select)
    window_ns: int | None
    options: tuple[tuple[str, int], ...]
    uses: tuple[Use, ...]
    identity: str = ""                # what it is (compiler/identity.py): its name's source


@dataclass(frozen=True)
class StatMap:
    """A BPF map: a hash keyed by ``key`` (or a one-entry array when unkeyed)
    whose value holds every slot. ``kind`` is "fused" for aggregate values,
    "track" for a track table, "hll" / "cms" for an unkeyed sketch."""
    name: str                         # derived from identity, e.g. "m_9c04e1"
    kind: str
    key: tuple[Field, ...]
    slots: tuple[Slot, ...]
    size: int
    on_full: str                      # "count" | "lru"
    uses: tuple[Use, ...]             # every app/stat that lives here
    track: "TrackIR | None" = None
    identity: str = ""                # what it is (compiler/identity.py): its name's source


@dataclass(frozen=True)
class TrackIR:
    open_guard: int
    close_guard: int
    expire_ns: int
    app: str
    stat: str


# ---- rules -------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    count: int
    per_ns: int
    text: str

    @property
    def interval_ns(self) -> int:
        return max(1, self.per_ns // self.count)


@dataclass(frozen=True)
class ASendPacket:
    fields: tuple[Field, ...]
    limit: Limit
    limiter: int = -1                # index into the rate-limiter map


@dataclass(frozen=True)
class ASendSummary:
    every_ns: int
    limit: Limit | None
    limiter: int = -1


@dataclass(frozen=True)
class AEnable:
    app: str
    duration_ns: int


@dataclass(frozen=True)
class AAlert:
    message: str
    limit: Limit
    limiter: int = -1


Action = Union[ASendPacket, ASendSummary, AEnable, AAlert]


@dataclass(frozen=True)
class RuleIR:
    id: int                           # program-wide
    app: str
    cond: int                         # predicate id
    actions: tuple[Action, ...]
    span: Span


# ---- apps and the program ---------------------------------------------------------------

@dataclass(frozen=True)
class ParamIR:
    app: str
    name: str
    default: int
    index: int                        # slot in the params map


@dataclass(frozen=True)
class AppIR:
    name: str
    index: int                        # bit in the enable mask
    mode: str
    select: int | None                # predicate id; None = every packet
    rules: tuple[RuleIR, ...]
    asl: str | None
    file: str
    span: Span
    stats: tuple[str, ...] = ()       # names of its stats, in spec order
    select_span: Span | None = None   # where its select is written (the C's comments name it)


@dataclass
class ProgramIR:
    apps: list[AppIR]
    preds: list[PredNode] = field(default_factory=list)
    maps: list[StatMap] = field(default_factory=list)
    params: list[ParamIR] = field(default_factory=list)
    layers: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()   # catalog fields read (the parser stores only their members)
    # before merging: per-app stat descriptions, consumed by the merge pass
    pending_stats: list = field(default_factory=list)
    # (app, stat, member) -> (map name, slot name); (app, stat) -> map name for tracks
    stat_slots: dict = field(default_factory=dict)
    track_maps: dict = field(default_factory=dict)
    # (app, stat) -> its key field names in the order the spec wrote them
    stat_keys: dict = field(default_factory=dict)

    def app(self, name: str) -> AppIR:
        return next(a for a in self.apps if a.name == name)

    def pred(self, pid: int) -> PredNode:
        return self.preds[pid]


# ---- printing ------------------------------------------------------------------------------

def vstr(v: Value) -> str:
    if isinstance(v, VField):
        return v.field.name
    if isinstance(v, VConst):
        if isinstance(v.value, bytes):
            return _addr_text(v.kind, v.value)
        if isinstance(v.value, bool):
            return "true" if v.value else "false"
        return str(v.value)
    if isinstance(v, VParam):
        return f"param {v.app}.{v.name}"
    if isinstance(v, VStat):
        where = f"[{', '.join(f.name for f in v.key)}]" if v.key else ""
        return f"{v.app}.{v.stat}{where}.{v.member}" + (f"@{v.slot}" if v.slot else "")
    if isinstance(v, VSize):
        return f"size({v.app}.{v.stat})"
    if isinstance(v, VArith):
        return f"({vstr(v.left)} {v.op} {vstr(v.right)})"
    raise AssertionError(v)


def _addr_text(kind: Kind, b: bytes) -> str:
    import ipaddress
    if kind == Kind.MAC:
        return ":".join(f"{x:02x}" for x in b)
    return str(ipaddress.ip_address(b))


def item_str(kind: Kind | None, it: SetItem) -> str:
    if it.kind == "eq":
        return _addr_text(kind, it.lo) if isinstance(it.lo, bytes) else str(it.lo)
    if it.kind == "range":
        return f"{it.lo}..{it.hi}"
    return f"{_addr_text(kind, it.lo)}/{it.hi}"


def pstr(p: Pred) -> str:
    if isinstance(p, PTrue):
        return "true"
    if isinstance(p, PFalse):
        return "false"
    if isinstance(p, PLayer):
        return p.layer
    if isinstance(p, PCmp):
        if p.op == "==" and isinstance(p.right, VConst) and p.right.value is True:
            return vstr(p.left)                     # a flag: tcp.syn
        return f"{vstr(p.left)} {p.op} {vstr(p.right)}"
    if isinstance(p, PIn):
        kind = p.value.field.kind if isinstance(p.value, VField) else None
        return f"{vstr(p.value)} in {{{', '.join(item_str(kind, i) for i in p.items)}}}"
    if isinstance(p, PAnd):
        return "(" + " and ".join(pstr(o) for o in p.operands) + ")"
    if isinstance(p, POr):
        return "(" + " or ".join(pstr(o) for o in p.operands) + ")"
    if isinstance(p, PNot):
        return f"not {pstr(p.operand)}"
    if isinstance(p, PRef):
        return f"p{p.id}"
    raise AssertionError(p)


def expand(preds: list[PredNode], pid: int) -> str:
    """Predicate ``pid`` as text with every reference to another predicate
    spelled out (for people; ``pstr`` keeps the references)."""
    def go(p) -> str:
        if isinstance(p, PRef):
            return go(preds[p.id].pred)
        if isinstance(p, PAnd):
            return "(" + " and ".join(go(o) for o in p.operands) + ")"
        if isinstance(p, POr):
            return "(" + " or ".join(go(o) for o in p.operands) + ")"
        if isinstance(p, PNot):
            return f"not {go(p.operand)}"
        return pstr(p)
    text = go(preds[pid].pred)
    return text[1:-1] if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]) else text


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _fmt_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    for unit, mult in (("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
                       ("ms", 1_000_000), ("us", 1_000)):
        if ns % mult == 0:
            return f"{ns // mult}{unit}"
    return f"{ns}ns"


def action_text(a: Action) -> str:
    """The action as an operator reads it (the manifest's text, the replay tables)."""
    if isinstance(a, ASendPacket):
        return f"send packet({', '.join(f.name for f in a.fields)}) limit {a.limit.text}"
    if isinstance(a, ASendSummary):
        # the limit "every" implies (one per period) goes without saying
        implied = a.limit is None or (a.limit.count, a.limit.per_ns) == (1, a.every_ns)
        lim = "" if implied else f" limit {a.limit.text}"
        return f"send summary every {_fmt_ns(a.every_ns)}{lim}"
    if isinstance(a, AEnable):
        return f"enable {a.app} for {_fmt_ns(a.duration_ns)}"
    if isinstance(a, AAlert):
        return f"alert {a.message!r} limit {a.limit.text}"
    raise AssertionError(a)


def action_str(a: Action) -> str:
    """action_text and, for the dumps, the rate limiter it uses."""
    limiter = getattr(a, "limiter", None)
    return action_text(a) + ("" if limiter is None else f" [rl{limiter}]")


def dump(prog: ProgramIR) -> str:
    out = [f"layers: {', '.join(sorted(prog.layers)) or '-'}", "preds:"]
    for n in prog.preds:
        out.append(f"  p{n.id} = {pstr(n.pred)}    # phase {n.phase}; {', '.join(n.users)}")
    out.append("maps:")
    for m in prog.maps:
        key = ", ".join(f.name for f in m.key) or "-"
        out.append(f"  {m.name}: {m.kind} key ({key}) size {m.size} on full {m.on_full}")
        if m.track:
            t = m.track
            out.append(f"    track {t.app}.{t.stat}: open p{t.open_guard} close p{t.close_guard} "
                       f"expire {_fmt_ns(t.expire_ns)}")
        for s in m.slots:
            args = ", ".join(a.name for a in s.args)
            opts = "".join(f" {k}={v}" for k, v in s.options)
            uses = ", ".join(f"{u.app}.{u.stat}.{u.member}" for u in s.uses)
            out.append(f"    {s.name}: {s.func}({args}){opts} if p{s.guard} window {_fmt_ns(s.window_ns)}"
                       f"    # {uses}")
    out.append("params:")
    for p in prog.params:
        out.append(f"  [{p.index}] {p.app}.{p.name} = {p.default}")
    out.append("apps:")
    for a in prog.apps:
        sel = "-" if a.select is None else f"p{a.select}"
        out.append(f"  {a.name} #{a.index} mode {a.mode} select {sel}")
        for r in a.rules:
            out.append(f"    rule {r.id}: when p{r.cond}")
            for act in r.actions:
                out.append(f"      {action_str(act)}")
    return "\n".join(out) + "\n"


def pred_values(p) -> list:
    """The values a predicate compares (a PCmp's two sides, a PIn's value)."""
    if isinstance(p, PCmp):
        return [p.left, p.right]
    if isinstance(p, PIn):
        return [p.value]
    return []


def walk_values(v):
    """``v`` and every value it is computed from."""
    yield v
    if isinstance(v, VArith):
        yield from walk_values(v.left)
        yield from walk_values(v.right)
