"""What a program's maps cost in kernel memory, known before anything is loaded.

Every map of the generated program is allocated whole when the program is
loaded: hash maps are preallocated (every entry exists from the start, used or
not), arrays are one block, a ring buffer is its pages. So the memory a program
takes is a function of its plan, and ``estimate(plan)`` computes it map by map
with the kernel's own accounting -- what ``map_mem_usage()`` reports and
``/proc/PID/fdinfo/FD`` shows as ``memlock`` (tests/test_memory.py compares the
two for every kind of map, in the kernel):

* hash, lru_hash: a struct of the table, one bucket per power-of-two slot, and
  per entry an element (a header, the key and the value, each rounded up to 8
  bytes). A plain hash keeps one spare element per possible CPU (plus a pointer
  to it); per-CPU values are a pointer in the element and one rounded value per
  possible CPU;
* array: a struct and the values (rounded up to 8); per-CPU: a pointer and one
  value per possible CPU per entry;
* LPM trie (large sets, the blocklist): not preallocated; the kernel charges a node,
  the address and the value per entry present (not its inner nodes). The estimate is
  the trie full (``max_entries``): what it may grow to while the program runs;
* ring buffer: its data pages, three pages of positions and header, and the page
  pointers of the (double) mapping.

``check(estimate, budget)`` refuses a program whose maps need more than the
budget (default: a quarter of physical memory), with an error at the statistic
that needs the most. ``check``, ``compile --report`` and the kernel engine (before
loading) use it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dsl.errors import Diagnostic
from dsl.units import COUNT_MULT

from . import abi
from .plan import Plan

# ---- the kernel's accounting ------------------------------------------------------------
# Sizes of the kernel's own structures, as Linux 6.18 (x86_64) reports them; other
# versions differ by some tens of bytes per map (before 6.15 a hash map also counts
# 8 lock counters per possible CPU), inside TOLERANCE.
HTAB = 960                  # sizeof(struct bpf_htab)
HTAB_ELEM = 48              # sizeof(struct htab_elem): list node, LRU node, hash; key follows
HTAB_BUCKET = 16            # sizeof(struct bucket): list head and lock
LLIST_NODE = 8              # the BPF memory allocator's free-list node, charged per element allocated
ARRAY = 312                 # sizeof(struct bpf_array)
RINGBUF = 304               # sizeof(struct bpf_ringbuf_map)
LPM_NODE = 24              # struct lpm_trie_node before its data (an LPM trie is charged per entry)
RINGBUF_META_PAGES = 3      # the header page and the two position pages of a ring buffer
POINTER = 8

HASH_TYPES = ("hash", "lru_hash", "percpu_hash", "lru_percpu_hash")
NOT_PREALLOCATED = {abi.BLOCKHASH_MAP}      # BPF_F_NO_PREALLOC (the template): charged per entry present


def tolerance(kernel_bytes: int) -> int:
    """How far an estimate may be from what a kernel charges: 1 % or 1 KiB,
    whichever is larger (the kernel's structs change size between versions)."""
    return max(kernel_bytes // 100, 1024)


def _r8(n: int) -> int:
    return -(-n // 8) * 8


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()



def map_bytes(bpf_type: str, entries: int, key_size: int, value_size: int, cpus: int,
              prealloc: bool = True) -> int:
    """Bytes the kernel charges for one map (``entries``: max_entries; for a ring
    buffer its data bytes, a multiple of the page size)."""
    if bpf_type == "hash" and not prealloc:   # BPF_F_NO_PREALLOC: the buckets, then per entry present
        elem = HTAB_ELEM + _r8(key_size) + _r8(value_size) + LLIST_NODE   # (here when full) an element of
        return HTAB + HTAB_BUCKET * _pow2(entries) + elem * entries     # the BPF allocator, htab_map_mem_usage()
    if bpf_type in HASH_TYPES:
        percpu = "percpu" in bpf_type
        lru = bpf_type.startswith("lru")
        elem = HTAB_ELEM + _r8(key_size) + (POINTER if percpu else _r8(value_size))
        n = entries if percpu or lru else entries + cpus          # spare elements for updates
        usage = HTAB + HTAB_BUCKET * _pow2(entries) + elem * n
        if percpu:
            usage += _r8(value_size) * cpus * n
        elif not lru:
            usage += POINTER * cpus
        return usage
    if bpf_type == "array":
        return ARRAY + entries * _r8(value_size)
    if bpf_type == "percpu_array":
        return ARRAY + entries * (POINTER + _r8(value_size) * cpus)
    if bpf_type == "prog_array":           # stages: a pointer per entry
        return ARRAY + entries * POINTER
    if bpf_type == "lpm_trie":             # not preallocated: charged per entry present (a node, the
        return entries * (LPM_NODE + key_size - 4 + value_size)   # address, the value), here when full
    if bpf_type == "ringbuf":
        data_pages = entries // abi.PAGE_SIZE
        return (RINGBUF + (RINGBUF_META_PAGES + data_pages) * abi.PAGE_SIZE
                + (RINGBUF_META_PAGES + 2 * data_pages) * POINTER)
    raise ValueError(f"unknown map type {bpf_type!r}")


# ---- the machine ------------------------------------------------------------------------

def possible_cpus() -> int:
    """The kernel's num_possible_cpus(): per-CPU values are allocated for each."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Budget:
    bytes: int
    why: str                # where the number comes from, for messages

    @classmethod
    def default(cls) -> "Budget":
        """A quarter of physical memory: map memory is kernel memory that cannot be
        swapped or reclaimed while the program runs, and the rest of the machine
        (and a second program while a new one is swapped in) needs room too."""
        phys = physical_memory()
        return cls(phys // 4, f"a quarter of this machine's {fmt_bytes(phys)}")

    @classmethod
    def of(cls, n: int | None) -> "Budget":
        """``n`` bytes as given (--memory-budget), or the default when None."""
        return cls.default() if n is None else cls(n, "set by --memory-budget")


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*?)\s*(B?)\s*$")
_SIZE_MULT = dict(COUNT_MULT, T=10 ** 12, Ti=1 << 40)


def parse_size(text: str) -> int:
    """A number of bytes as written on the command line: ``8Gi``, ``512MiB``, ``6G``,
    ``1000000`` (the language's count units, ``Ti``/``T`` too, an optional ``B``)."""
    m = _SIZE.match(text)
    if not m or m.group(2) not in _SIZE_MULT:
        raise ValueError(f"{text!r} is not a size: write bytes, e.g. 4Gi, 512Mi or 6G "
                         "(k, M, G, T: powers of 1000; Ki, Mi, Gi, Ti: powers of 1024)")
    num, unit = m.group(1), m.group(2)
    whole, _, frac = num.partition(".")
    n, rest = divmod(int(whole + frac) * _SIZE_MULT[unit], 10 ** len(frac))
    if rest:
        raise ValueError(f"{text!r} is not a whole number of bytes")
    if n <= 0:
        raise ValueError(f"a size is more than 0 bytes, not {text!r}")
    return n


def fmt_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# ---- the program's maps -----------------------------------------------------------------

@dataclass(frozen=True)
class MapCost:
    name: str
    bpf_type: str
    entries: int                  # max_entries (a ring buffer: its data bytes)
    key_size: int
    value_size: int
    bytes: int
    kind: str = "fixed"           # "fixed", a statistics map's kind, or "ring buffer"
    stats: tuple[str, ...] = ()   # "app.stat" of everything kept here
    span: object = None           # dsl.ast.Span of the first statistic (or rule) that needs it
    grows: bool = False           # charged per entry present (estimated full): an LPM trie, a
                                  # hash map without preallocation

    def to_json(self) -> dict:
        return {"map": self.name, "type": self.bpf_type, "kind": self.kind, "entries": self.entries,
                "key_size": self.key_size, "value_size": self.value_size, "bytes": self.bytes,
                "stats": list(self.stats)}


@dataclass(frozen=True)
class Estimate:
    maps: tuple[MapCost, ...]
    cpus: int
    fallback_span: object = None  # where to point when no map has a statistic (the first app)

    @property
    def total(self) -> int:
        return sum(m.bytes for m in self.maps)

    def map(self, name: str) -> MapCost:
        return next(m for m in self.maps if m.name == name)

    def to_json(self, budget: Budget | None = None) -> dict:
        out = {"possible_cpus": self.cpus, "total_bytes": self.total, "maps": [m.to_json() for m in self.maps]}
        if budget is not None:
            out["budget_bytes"] = budget.bytes
        return out


def _shapes(plan: Plan):
    """(name, type, entries, key size, value size, kind, statistics map) of every map
    the program declares (codegen_templates/xdp_program.c.j2), in its order. Every
    declared map is created at load, used by the code or not."""
    yield "xm_counters", "percpu_array", len(plan.counters), 4, 8, "fixed", None
    yield "xm_params", "array", 1, 4, plan.params_struct.size, "fixed", None
    yield "xm_ctl", "array", 1, 4, plan.ctl.size, "fixed", None
    yield "xm_zero", "array", 1, 4, plan.zero_size, "fixed", None
    yield "xm_scratch", "percpu_array", 1, 4, plan.scratch_size, "fixed", None
    yield "xm_rl", "array", max(1, plan.n_limiters), 4, 8, "fixed", None
    if plan.staged:
        yield abi.STAGES_MAP, "prog_array", len(plan.stages), 4, 4, "fixed", None
    # the filters: the blocklist at its bound (a trie grows as user space fills it)
    yield abi.BLOCKLIST_MAP, "lpm_trie", abi.BLOCKLIST_MAX, abi.BLOCK_KEY.size, abi.BLOCK_VALUE.size, "fixed", None
    yield abi.BLOCKBITS_MAP, "array", abi.BLOCKBITS_WORDS, 4, 8, "fixed", None
    yield abi.BLOCKHASH_MAP, "hash", abi.BLOCKLIST_MAX, abi.BLOCK_KEY.size, abi.BLOCK_VALUE.size, "fixed", None
    yield abi.FILTER_MAP, "array", 1, 4, abi.FILTER_STATE.size, "fixed", None
    yield abi.IFACES_MAP, "percpu_hash", abi.IFACES_MAX, 4, abi.IFACE_VALUE.size, "fixed", None
    for m in plan.maps:
        if m.kind == "fused":
            if m.key:
                yield m.name, m.bpf_type, m.entries, 4 if m.index else m.key.size, m.value.size, m.kind, m
            else:
                yield m.name, m.bpf_type, 1, 4, m.value.size, m.kind, m
        elif m.kind == "track":
            yield m.name, m.bpf_type, m.entries, m.key.size, abi.TRACK_VALUE.size, m.kind, m
            yield f"{m.name}_b", "array", abi.TRACK_BUCKETS, 4, abi.TRACK_BUCKET.size, m.kind, m
        elif m.kind == "hll":
            yield m.name, "array", m.entries, 4, 8, m.kind, m
            yield f"{m.name}_hdr", "array", 1, 4, abi.HLL_HEADER.size, m.kind, m
        else:
            yield m.name, "array", m.entries, 4, 8, m.kind, m
    for s in plan.sets:
        typ = {"lpm": "lpm_trie", "array": "array", "hash": "hash"}[s.kind]
        yield s.name, typ, s.entries, s.key_size, 1, "set", s


def estimate(plan: Plan, cpus: int | None = None) -> Estimate:
    """Every map of ``plan`` with the bytes the kernel will charge for it, on a
    machine with ``cpus`` possible CPUs (default: this one)."""
    cpus = cpus or possible_cpus()
    spans = {k.name: k.span for k in plan.kernel_maps()}      # the spec text that needs each map
    out = []
    for name, typ, entries, ks, vs, kind, m in _shapes(plan):
        if kind == "set":
            stats = (f"in-set on {m.field.name}",)
        else:
            stats = tuple(sorted({f"{u.app}.{u.stat}" for u in m.map.uses})) if m is not None else ()
        pre = name not in NOT_PREALLOCATED
        out.append(MapCost(name, typ, entries, ks, vs, map_bytes(typ, entries, ks, vs, cpus, pre), kind, stats,
                           spans.get(name) if m is not None and kind != "set" else None,
                           grows=typ == "lpm_trie" or not pre))
    if plan.ringbufs:                       # one ring buffer for every app with rules
        ring = plan.ringbuf_bytes
        out.append(MapCost(abi.EVENTS_MAP, "ringbuf", ring, 0, 0, map_bytes("ringbuf", ring, 0, 0, cpus),
                           "ring buffer", tuple(a.name for a in plan.ringbufs), spans[abi.EVENTS_MAP]))
    first = plan.prog.apps[0].span if plan.prog.apps else None
    return Estimate(tuple(out), cpus, first)


# ---- the budget ---------------------------------------------------------------------------

_SHRINK = {
    "fused": "declare fewer entries with 'size' (a hash map is allocated whole when the program loads)",
    "track": "declare fewer entries with 'size' (a track table is allocated whole when the program loads)",
    "hll": "declare fewer registers",
    "cms": "declare a smaller width or depth",
    "ring buffer": "give fewer apps rules (the ring buffer has 256 KiB per app with rules)",
    "set": "write a smaller set",
    "fixed": "merge fewer apps into one program",
}


def check(est: Estimate, budget: Budget) -> list[Diagnostic]:
    """An error at the statistic whose map needs the most, when all maps of the
    program need more than ``budget``; [] when they fit."""
    total = est.total
    if total <= budget.bytes:
        return []
    blamed = max((m for m in est.maps if m.span is not None), key=lambda m: m.bytes, default=None)
    if blamed is None:
        return [Diagnostic(f"the program's maps need {fmt_bytes(total)} of kernel memory, above the memory "
                           f"budget of {fmt_bytes(budget.bytes)} ({budget.why})", est.fallback_span,
                           f"{_SHRINK['fixed']}, or raise the budget with --memory-budget")]
    # Also the other maps that live with this statistic (a track table's buckets, a sketch's header)
    own = sum(m.bytes for m in est.maps if m.stats == blamed.stats and m.kind == blamed.kind)
    if blamed.kind == "ring buffer":
        what = f"app {blamed.stats[0]}'s rules need a ring buffer of"
    elif len(blamed.stats) == 1:
        what = f"statistic {blamed.stats[0]} needs"
    else:
        what = f"statistics {', '.join(blamed.stats)} share a map that needs"
    shape = (f"{blamed.bpf_type} map {blamed.name}: {blamed.entries:,} entries, key {blamed.key_size} B, "
             f"value {blamed.value_size:,} B" if blamed.kind != "ring buffer" else blamed.name)
    return [Diagnostic(
        f"{what} {fmt_bytes(own)} of kernel memory ({shape}); the program's maps need {fmt_bytes(total)}, "
        f"above the memory budget of {fmt_bytes(budget.bytes)} ({budget.why})",
        blamed.span, f"{_SHRINK[blamed.kind]}, or raise the budget with --memory-budget")]


def render(est: Estimate, budget: Budget | None = None) -> str:
    """The maps as a table, largest first, and the total (``check --memory``,
    ``compile --report``)."""
    head = f"kernel memory: {fmt_bytes(est.total)} in {len(est.maps)} maps ({est.cpus} possible CPUs)"
    if budget is not None:
        head += f"; budget {fmt_bytes(budget.bytes)} ({budget.why})"
    w = max([12] + [len(m.name) for m in est.maps])
    out = [head, f"  {'map':<{w}} {'type':<13} {'entries':>11} {'key':>4} {'value':>6} {'bytes':>14}  statistics"]
    for m in sorted(est.maps, key=lambda m: (-m.bytes, m.name)):
        users = (f"rules of {len(m.stats)} apps" if m.kind == "ring buffer" else ", ".join(m.stats) or "(fixed)")
        out.append(f"  {m.name:<{w}} {m.bpf_type:<13} {m.entries:>11,} {m.key_size:>4} {m.value_size:>6} "
                   f"{m.bytes:>14,}  {users}")
    out.append(f"  {'total':<{w + 38}} {est.total:>14,}  ({fmt_bytes(est.total)})")
    return "\n".join(out) + "\n"
