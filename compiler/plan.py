"""The program plan: every decision about the generated program, as plain data.

Built once from the merged IR (:func:`build`), then read by every backend and
artifact -- the C printer (compiler/codegen.py and codegen_templates/), the
Python reference backend (runtime/engines/reference/pycompile.py), the manifest
(compiler/manifest.py) and the ASL stubs (compiler/stubs.py). No backend
imports another backend, and none re-derives what is decided here:

* the byte layout of every key, value, hash input and event record
  (compiler/layout.py);
* which phase-1 predicates are evaluated under which enable bits;
* per map: its name, BPF type, the condition under which it is touched, its
  slots, each with its aggregate, sketch parameters and window;
* per app with rules: the statistic values T3 reads (and how: which key fields
  of the packet form which key), the phase-3 predicates, the rules and their
  actions with rate-limiter slots, event records and the ring buffer;
* the positions of everything kept in arrays: counters, params, enable bits,
  rate limiters.

Names are derived from what a thing is (compiler/identity.py), so they do not
move when unrelated apps are added, removed or reordered; positions in arrays are
assigned here and published by name in the manifest.

``dump(plan)`` prints it (``xdpmon compile --dump plan``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dsl.fields import Field, Kind

from . import abi, c_fields, ir, percpu
from . import identity as I
from . import layout as L
from .ir import pred_values, walk_values
from .parse_outcomes import OUTCOMES, decoders_for


# ---- pieces --------------------------------------------------------------------------

@dataclass(frozen=True)
class Gate:
    """A test of the enable bits of on-demand apps (``bits`` empty: always on)."""
    apps: tuple[str, ...] = ()
    bits: tuple[int, ...] = ()

    @property
    def mask(self) -> int:
        return sum(1 << b for b in self.bits)

    def __bool__(self) -> bool:
        return bool(self.bits)


@dataclass(frozen=True)
class PredBlock:
    """Consecutive phase-1 predicates computed under one gate."""
    gate: Gate
    preds: tuple[ir.PredNode, ...]


@dataclass(frozen=True)
class HllParams:
    registers: int
    log2m: int
    rank_max: int            # 64 - log2m + 1
    am2: int                 # alpha_m * m^2 as an integer
    log2m_fp: int            # log2(m) in 2^-16 units


@dataclass(frozen=True)
class SlotPlan:
    slot: ir.Slot
    gate: Gate
    hash_key: L.Struct | None = None     # distinct / cms: the hashed fields
    hll: HllParams | None = None
    hist_buckets: int = 0
    cms_width: int = 0
    cms_depth: int = 0

    @property
    def name(self) -> str:
        return self.slot.name


@dataclass(frozen=True)
class TrackPlan:
    track: ir.TrackIR
    gate: Gate
    bucket_ns: int


@dataclass(frozen=True)
class IndexPart:
    """One key field's bits in the index of a keyed array map (MapPlan.index)."""
    member: str        # the key struct's member
    field: str         # its dsl field
    shift: int
    bits: int

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    def to_json(self) -> dict:
        return {"member": self.member, "field": self.field, "shift": self.shift, "bits": self.bits}


def key_index(key: L.Struct, fields, size: int) -> tuple[IndexPart, ...]:
    """The index of a keyed map that is an array (its key fields' values fit in
    abi.INDEX_KEY_BITS_MAX bits together and its size covers every one of them): each
    field's bits in key member order, the first lowest; () for a hash map."""
    by_name = {f.name: f for f in fields}
    parts, shift = [], 0
    for mb in key.members:
        if mb.role != "field":
            continue
        f = by_name[mb.field]
        if f.kind.is_addr or f.kind == Kind.MAC:
            return ()
        parts.append(IndexPart(mb.name, f.name, shift, f.value_bits))
        shift += f.value_bits
    if not parts or shift > abi.INDEX_KEY_BITS_MAX or (1 << shift) > size:
        return ()
    return tuple(parts)


@dataclass(frozen=True)
class MapPlan:
    map: ir.StatMap
    bpf_type: str                         # "hash" | "lru_hash" | "array" (unkeyed, or keyed with an index)
    entries: int
    key: L.Struct | None
    value: L.Struct | None                # fused maps
    slots: tuple[SlotPlan, ...]           # fused maps: as laid out (unwindowed first, then by window)
    insert_failed: int                    # counter index
    track: TrackPlan | None = None
    identity: str = ""
    fingerprint: str = ""
    index: tuple[IndexPart, ...] = ()     # a keyed array: the key's bits in the index (key_index)
    percpu: bool = False                  # a value per CPU, combined by user space (compiler/percpu.py)

    @property
    def name(self) -> str:
        return self.map.name

    @property
    def kind(self) -> str:
        return self.map.kind

    def slot(self, name: str) -> SlotPlan:
        return next(s for s in self.slots if s.name == name)


@dataclass(frozen=True)
class EventPlan:
    """One event record layout: what ``action`` the record carries and its struct."""
    name: str                 # "<app>.r<rule>.a<action>" (ordinals within the app)
    action: int               # the record's ``action`` value: a hash of name and layout
    app: str
    rule: int                 # the rule's ordinal within the app (the record's ``rule``)
    index: int                # the action's ordinal within the rule
    type: str                 # "packet" | "summary" | "alert" | "enable"
    record: L.Struct
    fields: tuple[Field, ...]         # packet events: in the spec's order
    fingerprint: str = ""

    @property
    def class_name(self) -> str:
        """The event's class in the app's ASL module (packet events)."""
        return f"PacketEventR{self.rule}A{self.index}"


@dataclass(frozen=True)
class ActionPlan:
    action: ir.Action
    event: EventPlan
    limiter: int = -1                 # xm_rl slot (-1: not rate-limited)
    enable_bit: int = -1              # enable: the target's bit


@dataclass(frozen=True)
class RulePlan:
    rule: ir.RuleIR
    name: str                         # "<app>.r<ordinal>"
    ordinal: int                      # its place among the app's rules
    fired: int                        # counter index
    actions: tuple[ActionPlan, ...]


@dataclass(frozen=True)
class StatReadPlan:
    """A statistic value T3 reads into X[index] (present when H[index])."""
    index: int
    value: ir.VStat
    map: str
    slot: str
    # fused maps: key member field -> the packet field it is read from
    key_sources: tuple[tuple[str, Field], ...] = ()
    ptr: str = ""                     # the entry pointer shared by reads of one key
    first_of_ptr: bool = False        # this read looks the entry up
    same_key: bool = False            # read by the packet's own key, as T2 keyed the map: T2's entry
                                      # pointer serves (no second lookup) where T2 and T3 share a stage
    guard: tuple[int, ...] = ()       # packet predicates every rule reading it is and-ed with: the read
                                      # is made only when they all hold (otherwise no such rule can hold)


@dataclass(frozen=True)
class SizeReadPlan:
    app: str
    stat: str
    map: str
    bucket_ns: int


@dataclass(frozen=True)
class T3Plan:
    app: str
    gate: Gate
    select: int | None
    reads: tuple[StatReadPlan, ...]
    sizes: tuple[SizeReadPlan, ...]
    preds: tuple[ir.PredNode, ...]          # phase 3, in id order
    rules: tuple[RulePlan, ...]


@dataclass(frozen=True)
class AppPlan:
    app: ir.AppIR
    enable_bit: int                   # -1: always on
    ringbuf: str | None               # the ring buffer its records go to (apps with rules)
    events: int                       # counter indices
    ringbuf_full: int
    rate_limited: int

    @property
    def name(self) -> str:
        return self.app.name


@dataclass(frozen=True)
class SetPlan:
    """A large ``in { ... }`` set kept in a map and tested by one lookup; the
    runtime fills the map before the first packet (runtime/dataplane/sets.py)."""
    name: str                     # "xm_set_<digest of the predicate>"
    pred: ir.PIn
    field: Field
    kind: str                     # "lpm" (addresses and prefixes), "array" (ints of <= 16 bits), "hash"
    key_size: int                 # lpm: 4 + address bytes; array: 4; hash: 8 (ints) or 6 (MACs)
    entries: int
    members: tuple[ir.SetItem, ...]   # what the map holds
    inline: tuple[ir.SetItem, ...]    # tested in code as before (ranges of a hash set)

    def to_json(self) -> dict:
        def item(i):
            lo = i.lo.hex() if isinstance(i.lo, bytes) else i.lo
            return {"kind": i.kind, "lo": lo, "hi": i.hi}
        return {"name": self.name, "kind": self.kind, "field": self.field.name, "key_size": self.key_size,
                "entries": self.entries, "members": [item(i) for i in self.members]}


@dataclass(frozen=True)
class StagePlan:
    """One XDP program of a staged program: the map updates and T3 blocks it runs.
    Stage 0 also parses and evaluates T1; each stage tail-calls the next."""
    index: int
    maps: tuple[str, ...]
    t3: tuple[str, ...]
    cost: int                         # estimated BPF instructions (stage_costs)

    @property
    def function(self) -> str:
        return abi.ENTRY_FUNCTION if self.index == 0 else abi.STAGE_FUNCTION.format(self.index)


@dataclass(frozen=True)
class ParamPlan:
    param: ir.ParamIR
    name: str                         # "<app>.<param>"
    index: int


@dataclass
class Plan:
    prog: ir.ProgramIR
    replay: bool
    apps: tuple[AppPlan, ...]
    decoders: frozenset[str]
    stores: tuple[str, ...]        # the members of struct xm_pkt the parser fills (c_fields.parser_stores)
    windows: tuple[int, ...]
    counters: tuple[str, ...]
    params: tuple[ParamPlan, ...]
    maps: tuple[MapPlan, ...]
    pred_blocks: tuple[PredBlock, ...]
    t3: tuple[T3Plan, ...]
    events: tuple[EventPlan, ...]
    n_limiters: int
    n_reads: int
    n_enable_bits: int
    ctl: L.Struct
    params_struct: L.Struct
    stages: tuple[StagePlan, ...] = ()
    sets: tuple[SetPlan, ...] = ()
    # The blocklist lookup is printed (False only for the benchmark's baseline program,
    # benchmarks/bench_blocklist.py: the same program without it).
    blocklist_lookup: bool = True
    # lookups
    _maps: dict = field(default_factory=dict, repr=False)
    _apps: dict = field(default_factory=dict, repr=False)
    _ctr: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._maps = {m.name: m for m in self.maps}
        self._apps = {a.name: a for a in self.apps}
        self._ctr = {n: i for i, n in enumerate(self.counters)}

    def set_index(self) -> dict:
        """pred key -> SetPlan: the sets the backends test by a lookup."""
        return {s.pred.key(): s for s in self.sets}

    def map(self, name: str) -> MapPlan:
        return self._maps[name]

    def app(self, name: str) -> AppPlan:
        return self._apps[name]

    def counter(self, name: str) -> int:
        return self._ctr[name]

    def param_index(self) -> dict[tuple[str, str], int]:
        return {(p.param.app, p.param.name): p.index for p in self.params}

    @property
    def n_preds(self) -> int:
        return len(self.prog.preds)

    @property
    def zero_size(self) -> int:
        """Bytes of the all-zero value inserted for a new key (the largest value)."""
        return max([8] + [m.value.size for m in self.maps if m.value is not None])

    @property
    def ringbufs(self) -> list[AppPlan]:
        """The apps with rules: their records share one ring buffer."""
        return [a for a in self.apps if a.ringbuf]

    @property
    def ringbuf_pages(self) -> int:
        return abi.ringbuf_pages(len(self.ringbufs))

    @property
    def ringbuf_bytes(self) -> int:
        return self.ringbuf_pages * abi.PAGE_SIZE

    @property
    def clock(self) -> str:
        """The program's clock: "capture" (replay: the capture's times), else "monotonic_coarse"
        where every window is at least abi.COARSE_CLOCK_MIN_WINDOW_NS long (pkt.ts, windows,
        expiries and rate limits then tick with the kernel's jiffies), else "monotonic"."""
        if self.replay:
            return "capture"
        return "monotonic_coarse" if all(w >= abi.COARSE_CLOCK_MIN_WINDOW_NS for w in self.windows) else "monotonic"

    @property
    def full_maps(self) -> list[str]:
        """The keyed maps an insert can fail on for want of room (not LRU): each has a time
        in the scratch until which no insert is tried (abi.FULL_RETRY_NS)."""
        return [m.name for m in self.maps if m.kind == "fused" and m.key and not m.index and m.map.on_full != "lru"]

    @property
    def scratch_head(self) -> int:
        """Bytes of the per-CPU scratch before P[]: the enable bits and their next
        change (16 B), the full maps' retry times (8 B each), X[] (8 B per read) and, when
        staged, the packet and the time."""
        return (16 + 8 * len(self.full_maps) + 8 * self.n_reads
                + (8 + abi.PKT_STRUCT_MAX if self.staged else 0))

    @property
    def p_size(self) -> int:
        """Bytes of P[] (1 B per predicate), padded to whole __u64s (it is zeroed by words)."""
        return -(-max(1, self.n_preds) // 8) * 8

    @property
    def scratch_size(self) -> int:
        """Bytes of the per-CPU scratch value: the head, P[] and H[] (1 B per read)."""
        return -(-(self.scratch_head + self.p_size + self.n_reads) // 8) * 8

    @property
    def staged(self) -> bool:
        """Several programs chained by tail calls (the packet then lives in the scratch)."""
        return len(self.stages) > 1

    def stage_of(self, kind: str, name: str) -> int:
        return next(s.index for s in self.stages if name in (s.maps if kind == "map" else s.t3))

    @property
    def block_families(self) -> tuple[str, ...]:
        """The address families the blocklist can match: those the parser decodes
        (a program whose apps read no IPv6 field parses no IPv6 header)."""
        return tuple(f for f in ("ipv4", "ipv6") if f in self.decoders)

    @property
    def blocklist_code(self) -> bool:
        """Whether the program's code consults the blocklist (the trie is declared always)."""
        return self.blocklist_lookup and bool(self.block_families)

    def filter_maps(self) -> list[str]:
        """The maps of the filters that stage 0's code uses: the per-interface
        counters and, when some address is parsed, the filter state (it gates them too) and
        the blocklist."""
        return ([abi.IFACES_MAP] + ([abi.FILTER_MAP] if self.block_families else [])
                + ([abi.BLOCKLIST_MAP, abi.BLOCKHASH_MAP, abi.BLOCKBITS_MAP] if self.blocklist_code else []))

    @property
    def t2_entries_reused(self) -> list[str]:
        """The keyed fused maps whose entry T2 just found or inserted is the one a rule reads
        (StatReadPlan.same_key), in one stage: T2 keeps its pointer for T3. Staged programs
        do not (a pointer does not survive a tail call), nor programs estimated above half
        a stage's budget. The maps whose pointer saves the most lookups (the rules reading
        it, one lookup each), ties in map order: abi.T2_ENTRIES_KEPT of them, or
        abi.T2_ENTRIES_KEPT_SMALL in a program estimated within a quarter of the budget."""
        cost = self.stages[0].cost
        if self.staged or cost > STAGE_BUDGET // 2:
            return []               # (and not where the verifier's paths are many already)
        saved: dict[str, int] = {}
        for t in self.t3:
            for r in t.reads:
                if r.same_key and r.first_of_ptr:
                    saved[r.map] = saved.get(r.map, 0) + 1
        # Few of them: a kept pointer is NULL on some paths and an entry on others until T3,
        # so each one doubles the paths the verifier walks there.
        n = abi.T2_ENTRIES_KEPT_SMALL if cost <= STAGE_BUDGET // 4 else abi.T2_ENTRIES_KEPT
        order = {m.name: i for i, m in enumerate(self.maps)}
        return sorted(saved, key=lambda m: (-saved[m], order[m]))[:n]

    @property
    def has_reads(self) -> bool:
        """Whether any rule reads a statistic value (X[] and H[] are used)."""
        return any(t.reads for t in self.t3)

    def fixed_maps(self) -> list[str]:
        """The maps of codegen_templates/xdp_program.c.j2 that the program's code
        uses. All are declared (user space reads and writes them by name); the
        kernel counts only those the code refers to."""
        out = ["xm_counters", "xm_params", "xm_scratch"]
        if self.n_enable_bits:
            out.append("xm_ctl")
        if any(m.kind == "fused" and m.key and not m.index for m in self.maps):
            out.append("xm_zero")                # inserts of new keys (into hash maps)
        if self.n_limiters:
            out.append("xm_rl")
        if self.staged:
            out.append(abi.STAGES_MAP)
        return out + self.filter_maps() + [s.name for s in self.sets]

    def kernel_maps(self) -> list["KernelMap"]:
        """Every map the program uses, in declaration order, with the spec text that
        needs it: what the kernel counts against its maps-per-program limit."""
        out = [KernelMap(n, "fixed", None) for n in self.fixed_maps()]
        for m in self.maps:
            span = min((u.span for u in m.map.uses), key=span_order, default=None)
            out.append(KernelMap(m.name, m.kind, span))
            if m.kind in ("track", "hll"):
                out.append(KernelMap(f"{m.name}_{'b' if m.kind == 'track' else 'hdr'}", m.kind, span))
        if self.ringbufs:
            first = self.ringbufs[0].app
            out.append(KernelMap(abi.EVENTS_MAP, "ring buffer", first.rules[0].span))
        return out

    def stage_maps(self, st: StagePlan) -> list[str]:
        """The maps the code of stage ``st`` refers to: what the kernel counts for
        that program (each stage is a program of its own)."""
        used = ["xm_counters", "xm_params", "xm_scratch"]
        if self.n_enable_bits:
            used.append("xm_ctl")
        if self.staged and st.index < len(self.stages) - 1:
            used.append(abi.STAGES_MAP)
        sets = self.set_index()

        def set_maps(preds):
            return [sets[n.pred.key()].name for n in preds
                    if isinstance(n.pred, ir.PIn) and n.pred.key() in sets]
        if st.index == 0:
            used += self.filter_maps()
            used += set_maps(n for n in self.prog.preds if n.phase == 1)
        for m in self.maps:
            if m.name not in st.maps:
                continue
            used.append(m.name)
            if m.kind == "track":
                used.append(f"{m.name}_b")
            elif m.kind == "hll":
                used.append(f"{m.name}_hdr")
            elif m.kind == "fused" and m.key and not m.index:      # (an array has every entry)
                used.append("xm_zero")
        for t in self.t3:
            if t.app not in st.t3:
                continue
            for r in t.reads:
                m = self.map(r.map)
                used.append(f"{m.name}_hdr" if m.kind == "hll" else m.name)
            used += [f"{s.map}_b" for s in t.sizes]
            used += set_maps(t.preds)
            actions = [ap for r in t.rules for ap in r.actions]
            if actions:
                used.append(abi.EVENTS_MAP)
            if any(ap.limiter >= 0 for ap in actions):
                used.append("xm_rl")
        return list(dict.fromkeys(used))




@dataclass(frozen=True)
class KernelMap:
    name: str
    role: str                 # "fixed", a map kind ("fused", "track", "hll", "cms") or "ring buffer"
    span: object              # dsl.ast.Span of the spec text that needs it; None for fixed maps


def span_order(span) -> tuple:
    """Spans in reading order (file, line, column): the first is where an error points."""
    return (span.file, span.line, span.col)


# ---- HyperLogLog constants ------------------------------------------------------------------

def hll_params(registers: int) -> HllParams:
    log2m = int(math.log2(registers))
    alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(registers, 0.7213 / (1 + 1.079 / registers))
    return HllParams(registers, log2m, 64 - log2m + 1, int(round(alpha * registers * registers)), log2m << 16)


# ---- building ----------------------------------------------------------------------------------

def counter_names(prog: ir.ProgramIR, staged: bool = False) -> list[str]:
    """The global per-CPU counter array, index -> name."""
    names = ["frames"] + [f"parse.{o.name}" for o in OUTCOMES]
    if staged:
        names.append("stage.tail_call_failed")
    names += ["verdict.pass", "verdict.drop", "blocklist.logged", "blocklist.dropped"]
    names += [f"map.{m.name}.insert_failed" for m in prog.maps]
    for a in prog.apps:
        names += [f"app.{a.name}.events", f"app.{a.name}.ringbuf_full", f"app.{a.name}.rate_limited"]
    names += [f"rule.{rule_name(a, k)}.fired" for a in prog.apps for k in range(len(a.rules))]
    return names


def rule_name(app: ir.AppIR, ordinal: int) -> str:
    return f"{app.name}.r{ordinal}"


def map_fingerprint(m: ir.StatMap, bpf_type: str, entries_layout, key: L.Struct | None,
                    value: L.Struct | None) -> str:
    """The schema of a map: what its entries look like, not how many there are."""
    return I.fingerprint(m.kind, bpf_type, key.to_json() if key else None,
                         value.to_json() if value else None, entries_layout)


def event_action_ids(names_and_prints: list[tuple[str, str]]) -> dict[str, int]:
    """A 31-bit record id per event, from its name and layout: the same event keeps
    its id across programs (records in flight during a swap decode right)."""
    out: dict[str, int] = {}
    used: set[int] = set()
    for name, fp in names_and_prints:
        salt = 0
        while True:
            aid = int(I.digest(f"{name}|{fp}|{salt}")[:8], 16) & 0x7FFFFFFF
            if aid not in used:
                break
            salt += 1
        used.add(aid)
        out[name] = aid
    return out


def gating_apps(modes: dict[str, str], users) -> tuple[str, ...]:
    """The on-demand apps whose enable bits gate what ``users`` share: none (always
    computed) as soon as one user is always on."""
    users = set(users)
    if any(modes[u] != "on_demand" for u in users):
        return ()
    return tuple(sorted(users))


def slot_gates(prog: ir.ProgramIR, slot: ir.Slot) -> tuple[str, ...]:
    """The on-demand apps whose enable bit gates ``slot`` (empty: always on)."""
    return gating_apps({a.name: a.mode for a in prog.apps}, (u.app for u in slot.uses))


def conjuncts(prog: ir.ProgramIR, pid: int) -> set[int]:
    """The predicates ``pid`` is the conjunction of (itself if it is no ``and``)."""
    p = prog.preds[pid].pred
    if isinstance(p, ir.PAnd):
        out: set[int] = set()
        for o in p.operands:
            out |= conjuncts(prog, o.id)
        return out
    return {pid}


def read_guards(prog: ir.ProgramIR, a: ir.AppIR) -> dict:
    """Per statistic value a rule of ``a`` reads (``ir.vkey``): the packet predicates
    (phase 1) that every rule reading it is and-ed with. Where one of them is false
    no rule reading the value can hold, so T3 need not read it (a trigger written
    ``when tcp.syn and syns > T`` reads its count on SYNs only)."""
    out: dict = {}
    selected = conjuncts(prog, a.select) if a.select is not None else set()   # T3 runs inside the select
    for r in a.rules:
        ids = closure(prog, r.cond)
        packet = {i for i in conjuncts(prog, r.cond) if prog.preds[i].phase == 1} - selected
        for i in ids:
            if prog.preds[i].phase != 3:
                continue
            for v in pred_values(prog.preds[i].pred):
                for x in walk_values(v):
                    if isinstance(x, ir.VStat):
                        k = ir.vkey(x)
                        out[k] = packet if k not in out else out[k] & packet
    return {k: tuple(sorted(g)) for k, g in out.items()}


def _ptr_of(prog: ir.ProgramIR, maps: dict, v) -> str:
    mname, _ = prog.stat_slots[(v.app, v.stat, v.member)]
    m = maps[mname]
    if m.kind != "fused":
        return ""
    return (f"r_{m.name}_" + "_".join(f.name.replace(".", "_") for f in v.key)) if m.key else f"r_{m.name}"


def closure(prog: ir.ProgramIR, pid: int) -> set[int]:
    """``pid`` and every predicate it refers to."""
    out = {pid}
    p = prog.preds[pid].pred
    if isinstance(p, (ir.PAnd, ir.POr)):
        for o in p.operands:
            out |= closure(prog, o.id)
    elif isinstance(p, ir.PNot):
        out |= closure(prog, p.operand.id)
    return out


# ---- large sets ----------------------------------------------------------------------------------

def set_plans(prog: ir.ProgramIR) -> tuple[SetPlan, ...]:
    """Every ``in`` set of more than abi.SET_INLINE_MAX items on a field becomes a
    map: an LPM trie for addresses (one lookup finds any prefix), a byte array
    indexed by the value for integers of at most 16 bits (ranges expanded), a
    hash set of the values for wider integers and MACs (ranges stay inline)."""
    out = []
    for n in prog.preds:
        p = n.pred
        if not (isinstance(p, ir.PIn) and isinstance(p.value, ir.VField) and len(p.items) > abi.SET_INLINE_MAX):
            continue
        f = p.value.field
        name = "xm_set_" + I.digest(repr(p.key()))[:I.SHORT]
        if f.kind in (Kind.IP, Kind.IP4, Kind.IP6):
            out.append(SetPlan(name, p, f, "lpm", 4 + f.nbytes, len(p.items), p.items, ()))
        elif f.kind == Kind.INT and f.bits <= 16:
            out.append(SetPlan(name, p, f, "array", 4, 1 << f.bits, p.items, ()))
        else:
            members = tuple(i for i in p.items if i.kind == "eq")
            inline = tuple(i for i in p.items if i.kind != "eq")
            out.append(SetPlan(name, p, f, "hash", 6 if f.kind == Kind.MAC else 8, max(1, len(members)),
                               members, inline))
    return tuple(out)


# ---- stages -------------------------------------------------------------------------------------

# Estimated BPF instructions per block (fitted to what clang emits for generated
# programs of 16 to 256 apps, within ~20%). A stage stays under STAGE_BUDGET
# estimated instructions: BPF jumps reach 32,767 instructions, and the verifier's
# rewrites (map lookups, helper calls) lengthen the code it has to jump over.
STAGE_BUDGET = 12_000
_BASE_COST = 600                       # parse, counters, the scratch
_SLOT_COST = {"count": 4, "sum": 6, "min": 10, "max": 10, "hist": 30, "distinct": 70}


def map_cost(m: ir.StatMap) -> int:
    cost = 30 + (100 if m.kind == "track" else 0)
    windows = {s.window_ns for s in m.slots}
    cost += 10 * len(windows)
    for s in m.slots:
        depth = dict(s.options).get("depth", 1)
        cost += 4 + (40 * depth if s.func == "cms" else _SLOT_COST.get(s.func, 10))
    return cost


def t3_cost(a: ir.AppIR) -> int:
    reads = len({r.cond for r in a.rules})          # a proxy: rules read what their conditions name
    return 20 + 40 * reads + sum(15 + 60 * len(r.actions) for r in a.rules)


def split_stages(prog: ir.ProgramIR, budget: int = STAGE_BUDGET) -> tuple[StagePlan, ...]:
    """Map blocks, then T3 blocks, in program order, into stages of at most
    ``budget`` estimated instructions (stage 0 also holds parsing and T1)."""
    blocks = [("map", m.name, map_cost(m)) for m in prog.maps]
    blocks += [("t3", a.name, t3_cost(a)) for a in prog.apps if a.rules]
    stages: list[list] = [[[], [], _BASE_COST + 8 * len(prog.preds)]]
    for kind, name, cost in blocks:
        cur = stages[-1]
        if cur[0] + cur[1] and cur[2] + cost > budget or not cur[0] + cur[1] and cur[2] > budget:
            stages.append([[], [], 0])
            cur = stages[-1]
        (cur[0] if kind == "map" else cur[1]).append(name)
        cur[2] += cost
    return tuple(StagePlan(i, tuple(m), tuple(t), c) for i, (m, t, c) in enumerate(stages))


class _Builder:
    def __init__(self, prog: ir.ProgramIR, replay: bool, stage_budget: int = STAGE_BUDGET):
        self.prog = prog
        self.replay = replay
        self.modes = {a.name: a.mode for a in prog.apps}
        # one enable bit per on-demand app (always-on apps need none)
        self.bits = {a.name: i for i, a in enumerate(a for a in prog.apps if a.mode == "on_demand")}
        self.stages = split_stages(prog, stage_budget)
        self.counters = counter_names(prog, staged=len(self.stages) > 1)
        self.ctr = {n: i for i, n in enumerate(self.counters)}

    def gate(self, apps) -> Gate:
        apps = tuple(apps)
        return Gate(apps, tuple(self.bits[a] for a in apps)) if apps else Gate()

    def app_gate(self, app: str) -> Gate:
        return self.gate((app,) if self.modes[app] == "on_demand" else ())

    def uses_gate(self, uses) -> Gate:
        """The gate of what ``uses`` share: always on as soon as one user is."""
        return self.gate(gating_apps(self.modes, (u.app for u in uses)))

    # ---- T1 -----------------------------------------------------------------------------
    def pred_blocks(self) -> tuple[PredBlock, ...]:
        blocks: list[tuple[Gate, list]] = []
        for n in self.prog.preds:
            if n.phase != 1:
                continue
            g = self.gate(gating_apps(self.modes, n.users))
            if not blocks or blocks[-1][0] != g:
                blocks.append((g, []))
            blocks[-1][1].append(n)
        return tuple(PredBlock(g, tuple(ns)) for g, ns in blocks)

    # ---- T2 -----------------------------------------------------------------------------
    def slot_plan(self, s: ir.Slot) -> SlotPlan:
        g = self.uses_gate(s.uses)
        opts = dict(s.options)
        if s.func == "distinct":
            return SlotPlan(s, g, L.field_struct(f"xm_h_{s.name}", s.args), hll=hll_params(opts["registers"]))
        if s.func == "cms":
            return SlotPlan(s, g, L.field_struct(f"xm_h_{s.name}", s.args),
                            cms_width=opts["width"], cms_depth=opts["depth"])
        if s.func == "hist":
            return SlotPlan(s, g, hist_buckets=L.hist_buckets(s.args[0]))
        return SlotPlan(s, g)

    def map_plan(self, m: ir.StatMap, read_in_kernel: set[str] = frozenset()) -> MapPlan:
        slots = tuple(self.slot_plan(s) for s in m.slots)
        key = L.field_struct(f"xm_k_{m.name}", m.key) if m.key else None
        value = L.value_struct(m) if m.kind == "fused" else None
        fixed = None
        if m.kind == "fused":
            slots = tuple(sorted(slots, key=lambda sp: sp.slot.window_ns or 0))   # stable: map order within a window
        track = None
        entries = m.size
        index = ()
        if m.kind == "fused":
            bpf_type = ("lru_hash" if m.on_full == "lru" else "hash") if m.key else "array"
            index = key_index(key, m.key, m.size) if m.key else ()
            if index:
                bpf_type, entries = "array", 1 << sum(p.bits for p in index)
                fixed = [p.to_json() for p in index]
            if m.name not in read_in_kernel and percpu.combinable(m, entries):
                bpf_type = percpu.TYPES[bpf_type]
        elif m.kind == "track":
            bpf_type = "lru_hash"
            track = TrackPlan(m.track, self.uses_gate(m.uses), max(1, m.track.expire_ns // abi.TRACK_BUCKETS))
            fixed = [abi.TRACK_VALUE.to_json(), abi.TRACK_BUCKET.to_json(), abi.TRACK_BUCKETS, track.bucket_ns]
        else:
            bpf_type = "array"
            o = dict(m.slots[0].options)
            entries = o["registers"] if m.kind == "hll" else o["width"] * o["depth"]
            fixed = [entries, abi.HLL_HEADER.to_json() if m.kind == "hll" else abi.CMS_COUNT_BITS,
                     slots[0].hash_key.to_json(), m.slots[0].window_ns]
        return MapPlan(m, bpf_type, entries, key, value, slots,
                       self.ctr[f"map.{m.name}.insert_failed"], track, m.identity,
                       map_fingerprint(m, bpf_type, fixed, key, value), index, bpf_type in percpu.TYPES.values())

    # ---- T3 -----------------------------------------------------------------------------
    def t3_plan(self, a: ir.AppIR, actions: dict) -> T3Plan:
        prog = self.prog
        ids: set[int] = set()
        for r in a.rules:
            ids |= closure(prog, r.cond)
        phase3 = tuple(prog.preds[i] for i in sorted(ids) if prog.preds[i].phase == 3)
        vstats: dict = {}
        vsizes: dict = {}
        for n in phase3:
            for v in pred_values(n.pred):
                for x in walk_values(v):
                    if isinstance(x, ir.VStat):
                        vstats.setdefault(ir.vkey(x), x)
                    elif isinstance(x, ir.VSize):
                        vsizes.setdefault((x.app, x.stat), x)
        maps = {m.name: m for m in prog.maps}
        guards = read_guards(prog, a)
        ptr_of = {k: _ptr_of(prog, maps, v) for k, v in vstats.items()}
        ptr_guard: dict[str, set] = {}          # reads sharing an entry pointer share its lookup: one guard
        for k, ptr in ptr_of.items():
            if ptr:
                g = set(guards.get(k, ()))
                ptr_guard[ptr] = g if ptr not in ptr_guard else ptr_guard[ptr] & g
        reads = []
        ptrs: set[str] = set()
        for i, v in enumerate(vstats.values()):
            mname, sname = prog.stat_slots[(v.app, v.stat, v.member)]
            m = maps[mname]
            sources: tuple = ()
            ptr = ""
            if m.kind == "fused":
                written = prog.stat_keys[(v.app, v.stat)]
                sources = tuple(zip(written, v.key))
                ptr = ptr_of[ir.vkey(v)]
            first = bool(ptr) and ptr not in ptrs
            ptrs.add(ptr)
            same = bool(m.key) and tuple(written) == tuple(f.name for f in v.key)
            guard = tuple(sorted(ptr_guard[ptr])) if ptr else guards.get(ir.vkey(v), ())
            reads.append(StatReadPlan(i, v, mname, sname, sources, ptr, first, same if m.kind == "fused" else False,
                                      guard))
        sizes = []
        for (app, stat) in vsizes:
            mname = prog.track_maps[(app, stat)]
            sizes.append(SizeReadPlan(app, stat, mname, max(1, maps[mname].track.expire_ns // abi.TRACK_BUCKETS)))
        rules = []
        for k, r in enumerate(a.rules):
            name = rule_name(a, k)
            rules.append(RulePlan(r, name, k, self.ctr[f"rule.{name}.fired"],
                                  tuple(actions[(r.id, i)] for i in range(len(r.actions)))))
        return T3Plan(a.name, self.app_gate(a.name), a.select, tuple(reads), tuple(sizes), phase3, tuple(rules))

    def actions(self) -> tuple[dict, list[EventPlan]]:
        todo = []
        for a in self.prog.apps:
            for k, r in enumerate(a.rules):
                for i, act in enumerate(r.actions):
                    fields = tuple(act.fields) if isinstance(act, ir.ASendPacket) else ()
                    name = f"{rule_name(a, k)}.a{i}"
                    rec = L.field_struct(f"xm_ev_{name.replace('.', '_')}", fields, L.EVENT_HEAD)
                    todo.append((a, k, r, i, act, fields, name, rec, I.fingerprint(rec.to_json())))
        ids = event_action_ids([(t[6], t[8]) for t in todo])
        out: dict = {}
        events: list[EventPlan] = []
        for a, k, r, i, act, fields, name, rec, fp in todo:
            typ = {ir.ASendPacket: "packet", ir.ASendSummary: "summary", ir.AAlert: "alert",
                   ir.AEnable: "enable"}[type(act)]
            ev = EventPlan(name, ids[name], a.name, k, i, typ, rec, fields, fp)
            events.append(ev)
            out[(r.id, i)] = ActionPlan(act, ev, getattr(act, "limiter", -1),
                                        self.bits[act.app] if isinstance(act, ir.AEnable) else -1)
        return out, events

    def build(self) -> Plan:
        prog = self.prog
        actions, events = self.actions()
        apps = []
        for a in prog.apps:
            apps.append(AppPlan(a, self.bits[a.name] if a.mode == "on_demand" else -1,
                                abi.EVENTS_MAP if a.rules else None,
                                self.ctr[f"app.{a.name}.events"], self.ctr[f"app.{a.name}.ringbuf_full"],
                                self.ctr[f"app.{a.name}.rate_limited"]))
        t3 = tuple(self.t3_plan(a, actions) for a in prog.apps if a.rules)
        read_in_kernel = {r.map for t in t3 for r in t.reads}
        limiters = [ap.limiter for ap in actions.values()]
        n_bits = len(self.bits)
        return Plan(
            prog=prog, replay=self.replay, apps=tuple(apps),
            decoders=decoders_for(prog.layers),
            stores=c_fields.parser_stores(prog.fields),
            windows=tuple(sorted({s.window_ns for m in prog.maps for s in m.slots if s.window_ns})),
            counters=tuple(self.counters),
            params=tuple(ParamPlan(p, f"{p.app}.{p.name}", p.index) for p in prog.params),
            maps=tuple(self.map_plan(m, read_in_kernel) for m in prog.maps),
            pred_blocks=self.pred_blocks(), t3=t3, events=tuple(events),
            n_limiters=max(limiters + [-1]) + 1,
            n_reads=max([len(t.reads) for t in t3] + [1]),
            n_enable_bits=n_bits,
            ctl=abi.ctl_struct(n_bits),
            params_struct=abi.params_struct(len(prog.params)),
            stages=self.stages,
            sets=set_plans(prog),
        )


def build(prog: ir.ProgramIR, replay: bool = False, stage_budget: int = STAGE_BUDGET) -> Plan:
    """``stage_budget``: estimated instructions per stage (tests force staging with 1)."""
    return _Builder(prog, replay, stage_budget).build()


# ---- printing -------------------------------------------------------------------------------------

def _gate_text(g: Gate) -> str:
    return "always" if not g else "while " + ", ".join(f"{a} (bit {b})" for a, b in zip(g.apps, g.bits)) + " enabled"


def dump(plan: Plan) -> str:
    """The plan as stable text, for people (``xdpmon compile --dump plan``)."""
    fmt = ir._fmt_ns
    out = [f"build: {'replay (capture clock)' if plan.replay else 'live (kernel clock)'}",
           f"decoders: {', '.join(sorted(plan.decoders))}",
           f"parser stores: {', '.join(plan.stores)}",
           f"windows: {', '.join(fmt(w) for w in plan.windows) or '-'}",
           "apps:"]
    for a in plan.apps:
        bit = f"enable bit {a.enable_bit}" if a.enable_bit >= 0 else "always on"
        out.append(f"  {a.name}: {bit}; ring buffer {a.ringbuf or '-'}")
    out.append("t1 predicates:")
    for b in plan.pred_blocks:
        out.append(f"  {_gate_text(b.gate)}: " + ", ".join(f"p{n.id}" for n in b.preds))
    out.append("maps:")
    for m in plan.maps:
        key = f"key {m.key.name} ({m.key.size} B)" if m.key else "no key"
        out.append(f"  {m.name}: {m.kind}, {m.bpf_type} x {m.entries}, {key}"
                   + (f", value {m.value.name} ({m.value.size} B)" if m.value else "")
                   + f"; insert failures -> counter {m.insert_failed}")
        if m.identity:
            out.append(f"    identity {m.identity}  fingerprint {m.fingerprint}")
        if m.index:
            out.append("    indexed by " + " | ".join(f"{p.field} << {p.shift}" for p in m.index))
        if m.percpu:
            out.append("    a value per CPU (no rule reads it in the kernel)")
        if m.track:
            out.append(f"    track {m.track.track.app}.{m.track.track.stat}: {_gate_text(m.track.gate)}, "
                       f"buckets of {fmt(m.track.bucket_ns)}")
        for s in m.slots:
            extra = ""
            if s.hll:
                extra = f" registers {s.hll.registers} am2 {s.hll.am2}"
            elif s.cms_width:
                extra = f" width {s.cms_width} depth {s.cms_depth}"
            elif s.hist_buckets:
                extra = f" buckets {s.hist_buckets}"
            out.append(f"    {s.name}: {s.slot.func} under p{s.slot.guard}, {_gate_text(s.gate)}, "
                       f"window {fmt(s.slot.window_ns)}{extra}")
    out.append("t3:")
    for t in plan.t3:
        sel = "-" if t.select is None else f"p{t.select}"
        out.append(f"  {t.app}: {_gate_text(t.gate)}, select {sel}")
        for r in t.reads:
            out.append(f"    X[{r.index}] = {ir.vstr(r.value)} from {r.map}.{r.slot}")
        for s in t.sizes:
            out.append(f"    size({s.app}.{s.stat}) from {s.map}")
        if t.preds:
            out.append("    phase-3 predicates: " + ", ".join(f"p{n.id}" for n in t.preds))
        for r in t.rules:
            out.append(f"    rule {r.name} (when p{r.rule.cond}; fired -> counter {r.fired})")
            for ap in r.actions:
                lim = f", limiter {ap.limiter}" if ap.limiter >= 0 else ""
                out.append(f"      {ir.action_str(ap.action)} -> event {ap.event.name} "
                           f"(action {ap.event.action}, {ap.event.record.size} B){lim}")
    out.append("params:")
    for p in plan.params:
        out.append(f"  [{p.index}] {p.name} = {p.param.default}")
    out.append(f"counters ({len(plan.counters)}):")
    for i, n in enumerate(plan.counters):
        out.append(f"  [{i}] {n}")
    out.append(f"scratch: {plan.n_preds} predicates, {plan.n_reads} statistic reads "
               f"({plan.scratch_size} of {abi.PERCPU_VALUE_MAX} bytes); "
               f"{plan.n_limiters} rate limiters; {plan.n_enable_bits} enable bits")
    fam = ", ".join(plan.block_families) or "none parsed: never consulted"
    out.append(f"filters: blocklist {abi.BLOCKLIST_MAP} (at most {abi.BLOCKLIST_MAX:,} prefixes; {fam}), "
               f"frames per interface {abi.IFACES_MAP} (at most {abi.IFACES_MAX})")
    kmaps = plan.kernel_maps()
    out.append(f"kernel maps: {len(kmaps)} of {abi.MAX_MAPS}: " + ", ".join(m.name for m in kmaps))
    return "\n".join(out) + "\n"
