"""The reference interpreter: the merged IR executed in pure Python.

``ReferenceEngine`` implements the engine protocol (runtime.engines.base.Engine:
``run_frame``, ``snapshot``, ``poll_events``, ``events``, ``maps``, ``stats``,
``close``) and needs no root, no BCC and no kernel. Its maps hold the same bytes
as the kernel's, in the same layouts (compiler/layout.py, the manifest), so its
``maps`` (``ReferenceMaps``) share runtime.dataplane.maps.MapAccess with the
kernel's, ``runtime.abi.snapshot.build_snapshot`` is shared and raw map contents
compare byte for byte with the kernel's. ``build_program`` is the one place it
asks the compiler for what to emulate.

What it emulates, exactly as the replay build of the generated C does
(codegen_templates/xdp_program.c.j2; runtime/engines/reference/pycompile.py has the
statement-by-statement translation):

* the parse (the program's layer set, ``ipv6_ext_max`` 6) on the bytes the kernel
  lets the program read: under BPF_PROG_TEST_RUN the replay input is the 8-byte
  header (compiler/abi.py REPLAY_HEADER: capture time, wire length; 16 bytes)
  followed by the frame, its first XDP_TEST_RUN_LINEAR (3520) bytes are linear and
  the program strips the header, so the parser sees ``min(len, 3504)`` bytes while
  pkt.len is the frame's length on the wire (more than ``len`` when the capture cut
  it at its snap length). Frames shorter than 14 bytes are refused (never run), as
  are frames the kernel cannot hold (``len + 16 > 3520 + 17 * 4096``: ENOMEM, i.e.
  longer than 73136 bytes); both are counted in ``stats.refused`` (by reason) as by
  the kernel engine;
* the filters before any app: frames and bytes of the interfaces user space counts
  (the test run's ingress_ifindex is the loopback's, 1), the blocklist (its hash
  map's lengths longest first, then its trie, expired entries ignored: BlockMaps;
  hits, log-only or XDP_DROP with blocklist.dropped and verdict.drop);
* counters (frames, parse outcome, verdict.pass, per-map insert failures, per-app
  events / ringbuf_full / rate_limited, per-rule fired), params, the enable mask
  (xm_enabled / xm_enable, events only when the target app was off);
* phase-1 predicates (absent fields make comparisons false; u64 arithmetic with
  saturating ``-`` and ``/0 = 0``), fused maps (insert failures of full ``count``
  maps are counted), window epochs (``now // window + 1``, one per windowed
  slot, which resets the slot when it is updated in another window, keeping the value of
  the window before in its ``_last`` members), count / sum (u64 wrap) / min
  (stored as ~min) / max / hist (log2 buckets) / keyed distinct (registers, z,
  zeros, z == 0 initialisation), unkeyed HyperLogLog (registers tagged
  ``epoch << 8 | rank``, header epoch/z/zeros and the last window's z/zeros), count-min
  (tag | count; no last window), track
  tables (buckets of expire/8, open/close/expire), T3 statistic reads (missing
  entry reads 0, absent key fields make the comparison false), ``size()``,
  estimates (runtime/abi/hll.py), rate limiters (GCRA as xm_rate_ok), event records
  (the same bytes; fields of absent layers sent as zeros; decoded when polled, by
  runtime.abi.records.decode_event as the kernel's), and the shared ring buffer's
  capacity (256 KiB per app with rules, as the C; drained when the engine polls: after every ``poll_every``
  frames and at each snapshot).

The reference does what the C does, even where that is surprising: when the C
changes, tests/test_differential.py fails until pycompile.py follows. Where the
C once broke what the README promises, it was fixed and tests/test_reference.py
pins the fixed behaviour: T3 reads of a stat keyed by a dns, icmp or icmp6 field
(a ``__u8`` once truncated the presence test), ``send packet`` fields of absent
layers (once copied from the shared storage of ``struct xm_pkt``, now zeros),
and keyed windowed distinct counts.

LRU maps (``on full lru`` and track tables): the kernel's BPF LRU hash is an
approximation (per-CPU free lists of 128 nodes; it may evict before it is full and
does not evict in strict recency order). The reference keeps an exact LRU (every
lookup or update is a use). The two agree as long as a map holds fewer entries than
its size minus 128 per CPU; the differential tests keep LRU maps below that and
compare everything else exactly.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from compiler import abi, ir
from compiler import plan as plan_mod
from compiler.abi import HLL_HEADER, REPLAY_HEADER
from runtime.abi import hll
from runtime.abi.manifest import Manifest
from runtime.abi.records import (decode_control, decode_filter_state, decode_u64s, encode_control,
                                 encode_filter_state, encode_u64s, filter_state_ifaces)
from runtime.dataplane.bpf_test_run import XDP_TEST_RUN_LINEAR, XDP_TEST_RUN_MAX
from runtime.abi.entries import Entries
from runtime.dataplane.maps import MapAccess, entries_in_use
from runtime.engines.base import QUEUE_SIZE, Engine

from . import pyparse
from .pycompile import M64, TRACK_NB, PyProgram, struct_format

XDP_PASS = 2
REPLAY_PREFIX = REPLAY_HEADER.size     # the capture time and wire length before each frame (replay build)
LINEAR = XDP_TEST_RUN_LINEAR - REPLAY_PREFIX
MAX_FRAME = XDP_TEST_RUN_MAX - REPLAY_PREFIX
MIN_FRAME = 14
CACHE_MAX = 1 << 18                    # entries of each hash / estimate cache

_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_Qq = struct.Struct("<Qq")
_HDR = struct.Struct(struct_format(HLL_HEADER)[0])   # epoch, z, zeros, z_last, zeros_last, est


def _s64(x: int) -> int:
    return ((x + (1 << 63)) & M64) - (1 << 63)


def _hll_hasher(mask: int, log2m: int, top: int):
    cache: dict = {}
    xm_hash = hll.xm_hash

    def hx(hk: bytes):
        r = cache.get(hk)
        if r is None:
            h = xm_hash(hk, 0)
            w = h >> log2m
            rank = top if w == 0 else min((w & -w).bit_length(), top)
            r = (h & mask, rank)
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[hk] = r
        return r
    return hx


def _cms_indexer(width: int, depth: int):
    cache: dict = {}
    xm_hash = hll.xm_hash

    def cx(hk: bytes):
        r = cache.get(hk)
        if r is None:
            r = tuple(row * width + (xm_hash(hk, row + 1) & (width - 1)) for row in range(depth))
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[hk] = r
        return r
    return cx


def _estimator(regs: int, am2: int, lnm: int):
    cache: dict = {}
    est = hll.estimate

    def e(z: int, zeros: int) -> int:
        key = (z, zeros)
        r = cache.get(key)
        if r is None:
            r = est(z, zeros, regs, am2, lnm)
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[key] = r
        return r
    return e


def _sub(a: int, b: int) -> int:
    return a - b if a > b else 0


def _div(a: int, b: int) -> int:
    return a // b if b else 0


TEST_RUN_IFINDEX = 1                   # ingress_ifindex under BPF_PROG_TEST_RUN: the loopback's


class _ByLength:
    """Entries (prefixlen, 16 address bytes) -> [expires, hits, prefixlen], found by length."""

    def __init__(self):
        self.entries: dict[tuple[int, bytes], list[int]] = {}
        self.by_len: dict[int, dict[int, list[int]]] = {}       # prefixlen -> top bits -> entry

    @staticmethod
    def top(a: int, plen: int) -> int:
        return a >> (128 - plen)

    def put(self, plen: int, addr16: bytes, value: list[int]) -> None:
        self.entries[(plen, addr16)] = value
        self.by_len.setdefault(plen, {})[self.top(int.from_bytes(addr16, "big"), plen)] = value

    def delete(self, plen: int, addr16: bytes) -> bool:
        if self.entries.pop((plen, addr16), None) is None:
            return False
        tops = self.by_len[plen]
        del tops[self.top(int.from_bytes(addr16, "big"), plen)]
        if not tops:
            del self.by_len[plen]
        return True


class BlockMaps:
    """The blocklist's two maps: the hash map of the lengths the filter state lists and the
    trie. ``lookup(addr16, now, ipv4)`` is the entry the program (xm_blocked()) finds: the
    first live entry of the state's lengths, longest first (those of 96 bits and more for an
    IPv4 source); then, if the state says the trie holds
    a longer prefix, the trie's longest match if it is live and longer."""

    def __init__(self, state: list):
        self.state = state              # the filter state: [entries, flags, trie_longest, lens]
        self.hash = _ByLength()
        self.trie = _ByLength()

    def lookup(self, addr16: bytes, now: int, ipv4: int = 0):
        a = int.from_bytes(addr16, "big")
        b, found = None, -1
        if self.state[1] & abi.FILTER_HASHED:
            for plen in self.state[3]:
                if ipv4 and plen < abi.BLOCK_V4_PREFIX:
                    break                           # (xm_filter.n_lens_v4)
                v = self.hash.by_len.get(plen, {}).get(a >> (128 - plen))
                if v is not None and v[0] > now:
                    b, found = v, plen
                    break
        if self.state[1] & abi.FILTER_PREFIXES and self.state[2] > found:
            for plen in sorted(self.trie.by_len, reverse=True):       # the trie's longest match
                v = self.trie.by_len[plen].get(a >> (128 - plen))
                if v is not None:
                    if v[0] > now and v[2] > found:
                        b = v
                    break
        return b


def build_program(program, manifest: dict | None = None):
    """What the engine emulates, from the compiler: (IR, program plan,
    manifest, the plan printed as Python). ``program`` is compiler.driver.Artifacts
    or a compiler.ir.ProgramIR; without a manifest (given or in the artifacts) the
    compiler builds it."""
    prog = program.ir if hasattr(program, "ir") else program
    if not isinstance(prog, ir.ProgramIR):
        raise TypeError("ReferenceEngine needs compiler.driver.Artifacts or a compiler.ir.ProgramIR")
    plan = getattr(program, "plan", None)          # the artifacts' own plan (its stages, counters)
    if plan is None or not plan.replay:
        plan = plan_mod.build(prog, replay=True)
    if manifest is None:
        manifest = getattr(program, "manifest", None)
    if manifest is None:
        from compiler import manifest as manifest_mod
        manifest = manifest_mod.build(plan)
    return prog, plan, manifest, PyProgram(plan, linear=LINEAR)


class ReferenceMaps(MapAccess):
    """The emulated maps as runtime.dataplane.maps.MapAccess: the same bytes as
    the kernel's maps, read from and written to the engine's Python state."""

    def __init__(self, engine: "ReferenceEngine"):
        super().__init__(engine.manifest)
        self._e = engine

    def _read(self, name: str, index: int) -> bytes:
        e = self._e
        if name == self.manifest.params_map:
            return encode_u64s(e.PAR)
        if name == self.manifest.control_map:
            return encode_control(e.CTL[0], e.CTL[1], e.UNTIL)
        if name == self.manifest.filters.state_map:
            return encode_filter_state(*e.FLT[:4], self.manifest.filters.lens_max, e.FLT[4])
        raise KeyError(name)

    def _write(self, name: str, index: int, data: bytes) -> None:
        e = self._e                  # in place: the compiled program holds these lists
        if name == self.manifest.params_map:
            e.PAR[:] = decode_u64s(data, len(e.PAR))
        elif name == self.manifest.control_map:
            e.CTL[0], e.CTL[1], e.UNTIL[:] = decode_control(data, len(e.UNTIL))
        elif name == self.manifest.filters.state_map:
            e.FLT[:] = [*decode_filter_state(data, self.manifest.filters.lens_max), filter_state_ifaces(data)]
        elif name == self.manifest.filters.bits_map:
            e.BITS[index] = struct.unpack("=Q", data[:8])[0]   # kept, not needed: the lookup is exact
        else:
            raise KeyError(name)

    def _put(self, name: str, key: bytes, value: bytes) -> None:
        e, f = self._e, self.manifest.filters
        if name in (f.hash_map, f.blocklist_map):
            plen, = struct.unpack_from("=I", key)
            (e.BLK.hash if name == f.hash_map else e.BLK.trie).put(
                plen, bytes(key[4:20]), list(struct.unpack("=QQQ", value[:24])))
        elif name == f.interfaces_map:
            e.IFC[struct.unpack_from("=I", key)[0]] = list(_QQ.unpack(value[:16]))
        else:
            raise KeyError(name)

    def _delete(self, name: str, key: bytes) -> bool:
        e, f = self._e, self.manifest.filters
        if name in (f.hash_map, f.blocklist_map):
            return (e.BLK.hash if name == f.hash_map else e.BLK.trie).delete(
                struct.unpack_from("=I", key)[0], bytes(key[4:20]))
        if name == f.interfaces_map:
            return e.IFC.pop(struct.unpack_from("=I", key)[0], None) is not None
        raise KeyError(name)

    def _percpu_items(self, name: str) -> list[tuple[bytes, list[int]]]:
        if name != self.manifest.filters.interfaces_map:
            raise KeyError(name)
        return [(struct.pack("=I", i), list(v)) for i, v in self._e.IFC.items()]

    def _percpu_sums(self, name: str, n: int) -> list[int]:
        return list(self._e.C)

    def _hash_items(self, name: str) -> list[tuple[bytes, bytes]]:
        f = self.manifest.filters
        if name in (f.hash_map, f.blocklist_map):
            m = self._e.BLK.hash if name == f.hash_map else self._e.BLK.trie
            return [(struct.pack("=I", plen) + addr, struct.pack("=QQQ", *v)) for (plen, addr), v in m.entries.items()]
        return self._e.map_contents(name)

    def _array_values(self, name: str) -> list[bytes]:
        return self._e.map_contents(name)

    def _indexed_items(self, m) -> Entries:
        """A keyed array's entries in use: the emulated map keeps only the keys seen."""
        return entries_in_use(self._e.map_contents(m.name), m.index.key_size)

    def _open_rings(self) -> None:
        pass                         # the compiled program appends to RBQ from the start

    def _consume_rings(self) -> None:
        """Every record of each app's ring in turn (apps in manifest order, as
        libbpf's ring_buffer__consume walks the rings in the order they were added)."""
        e = self._e
        for i, q in enumerate(e.RBQ):
            if q:                    # RBU[i] > 0 exactly when records wait
                for record in q:
                    self._deliver(record)
                q.clear()
                e.RBU[i] = 0


class ReferenceEngine(Engine):
    """The merged IR run in Python, behind the engine protocol (runtime.engines.base).

    ``ReferenceEngine(art)`` with ``compiler.driver.Artifacts``, or
    ``ReferenceEngine(program_ir, manifest)``. The manifest may be of the replay or
    the live build (the layouts are the same); the engine always emulates the
    replay build (the clock is the ``ts_ns`` given with each frame).
    """

    name = "reference"

    def __init__(self, program, manifest: dict | None = None, *, poll_every: int = 1,
                 queue_size: int = QUEUE_SIZE):
        self.prog, self.plan, manifest, self.py = build_program(program, manifest)
        self._build_state()
        self.manifest = Manifest.of(manifest)
        super().__init__(self.manifest, ReferenceMaps(self), poll_every=poll_every, queue_size=queue_size)
        self._step = self._compile()
        self._tables = self._map_tables()

    # ---- state ----------------------------------------------------------------------
    def _build_state(self) -> None:
        prog, plan = self.prog, self.plan
        self.C = [0] * len(plan.counters)
        self.PAR = [0] * len(plan.params)
        self.CTL = [0, 0]                       # mask, next_change (the C's xm_ctl)
        self.UNTIL = [0] * plan.n_enable_bits  # (the C pads an empty until[] to one unread entry)
        self.RL = [0] * plan.n_limiters
        self.RBU = [0]                          # bytes in the ring buffer (one, shared)
        self.RBQ = [[]]                         # its records, not yet consumed
        self.FLT = [0, 0, 0, (), 0]             # the filter state: entries, flags, trie_longest, lens, n_ifaces
        self.BLK = BlockMaps(self.FLT)          # the blocklist
        self.BITS: dict[int, int] = {}          # the hash map's bit array (a gate only: not consulted)
        self.IFC: dict = {}                     # ifindex -> [frames, bytes] (the interfaces counted)
        self.on_demand = [a.enable_bit for a in plan.apps if a.enable_bit >= 0]
        self.store: dict = {}                   # namespace name -> map state
        for m in prog.maps:
            if m.kind == "fused":
                if m.key:
                    self.store[f"M_{m.name}"] = OrderedDict() if m.on_full == "lru" else {}
                else:
                    self.store[f"V_{m.name}"] = None     # filled once the value plan exists
            elif m.kind == "track":
                self.store[f"M_{m.name}"] = OrderedDict()
                self.store[f"BE_{m.name}"] = [0] * TRACK_NB
                self.store[f"BC_{m.name}"] = [0] * TRACK_NB
            elif m.kind == "hll":
                regs = dict(m.slots[0].options)["registers"]
                self.store[f"R_{m.name}"] = [0] * regs
                self.store[f"HD_{m.name}"] = [0] * len(struct_format(HLL_HEADER)[1])
            elif m.kind == "cms":
                o = dict(m.slots[0].options)
                self.store[f"CM_{m.name}"] = [0] * (o["width"] * o["depth"])

    def _compile(self):
        py = self.py
        scale = self.manifest.constants.hll_scale_bits
        # DEC: the ring buffers keep the record bytes, decoded when polled (ReferenceMaps)
        ns: dict = {"M64": M64, "POW": [hll.hll_pow(r, scale) for r in range(256)], "SUB": _sub, "DIV": _div,
                    "C": self.C, "PAR": self.PAR, "CTL": self.CTL, "RL": self.RL, "RBU": self.RBU,
                    "RBQ": self.RBQ, "DEC": bytes, "REFRESH": self._refresh, "ENABLE": self._enable,
                    "FLT": self.FLT, "BLOCKED": self.BLK.lookup, "IFC": self.IFC,
                    "TEST_RUN_IFINDEX": TEST_RUN_IFINDEX}
        ns.update(pyparse.namespace(6))
        for m in self.prog.maps:
            if m.kind == "fused" and not m.key:
                self.store[f"V_{m.name}"] = eval(py.value_plans[m.name].new)
            if m.kind == "track":
                ns[f"TA_{m.name}"], ns[f"TS_{m.name}"] = self._track_funcs(m)
        ns.update(self.store)
        for name, spec in py.ns.items():
            if isinstance(spec, tuple):
                if spec[0] == "hll":
                    ns[name] = _hll_hasher(*spec[1:])
                elif spec[0] == "cms":
                    ns[name] = _cms_indexer(*spec[1:])
                elif spec[0] == "est":
                    ns[name] = _estimator(*spec[1:])
                else:
                    raise AssertionError(spec)
            else:
                ns[name] = spec
        self._packers = {m.name: eval(py.value_plans[m.name].pack_src, ns) for m in self.prog.maps
                         if m.kind == "fused"}
        # bind every namespace name the function uses as a keyword default (fast locals)
        src = py.source
        used = sorted(n for n in ns if n in src and not n.startswith("__"))
        header = "def run(ts, data, plen, *, " + ", ".join(f"{n}={n}" for n in used) + "):"
        src = src.replace("def run(ts, data, plen):", header, 1)
        self.source = src
        exec(compile(src, f"<xdpmon-reference:{id(self):x}>", "exec"), ns)
        return ns["run"]

    def _track_funcs(self, m: ir.StatMap):
        be = self.store[f"BE_{m.name}"]
        bc = self.store[f"BC_{m.name}"]

        def add(b: int, d: int) -> None:
            i = b % TRACK_NB
            if be[i] != b:
                be[i] = b
                bc[i] = 0
            bc[i] = _s64(bc[i] + d)

        def size(b: int) -> int:
            n = 0
            for i in range(TRACK_NB):
                e = be[i]
                if e <= b and b - e < TRACK_NB:
                    n += bc[i]
            return n if n > 0 else 0
        return add, size

    def _refresh(self, now: int) -> None:
        """xm_enabled(): recompute the enable mask when an enable time ran out."""
        mask, nxt = 0, M64
        until = self.UNTIL
        for i in self.on_demand:
            if until[i] > now:
                mask |= 1 << i
                if until[i] < nxt:
                    nxt = until[i]
        self.CTL[0] = mask
        self.CTL[1] = nxt

    def _enable(self, i: int, until: int) -> int:
        """xm_enable(): returns 1 when the app was off."""
        if i >= len(self.UNTIL):
            return 0
        ctl = self.CTL
        was_off = 0 if ctl[0] & (1 << i) else 1
        if self.UNTIL[i] < until:
            self.UNTIL[i] = until
        ctl[0] |= 1 << i
        if ctl[1] > until:
            ctl[1] = until
        return was_off

    # ---- the engine protocol ----------------------------------------------------------
    def _run(self, ts_ns: int, data: bytes, wire_len: int) -> int | None:
        n = len(data)
        if n < MIN_FRAME or n > MAX_FRAME:
            return None
        if not 0 <= ts_ns <= M64:
            raise struct.error(f"timestamp {ts_ns} is not a u64")
        if type(data) is not bytes:
            data = bytes(data)
        return self._step(ts_ns, data, wire_len)

    def _map_tables(self) -> dict:
        """Map name -> a function giving its contents as the kernel's map holds them:
        (key, value) byte pairs of a hash map, the values of an array."""
        tables = {}

        def items(store, pack):
            return lambda: [(k, pack(v)) for k, v in store.items()]

        def values(store, pack):
            return lambda: [pack(v) for v in store]

        store = self.store
        for m in self.prog.maps:
            n = m.name
            if m.kind == "fused":
                pack = self._packers[n]
                if m.key:
                    tables[n] = items(store[f"M_{n}"], pack)
                else:
                    tables[n] = lambda n=n, pack=pack: [pack(store[f"V_{n}"])]
            elif m.kind == "track":
                tables[n] = items(store[f"M_{n}"], lambda v: _QQ.pack(*v))
                be, bc = store[f"BE_{n}"], store[f"BC_{n}"]
                tables[f"{n}_b"] = lambda be=be, bc=bc: [_Qq.pack(be[i], bc[i]) for i in range(TRACK_NB)]
            elif m.kind == "hll":
                tables[n] = values(store[f"R_{n}"], _Q.pack)
                tables[f"{n}_hdr"] = lambda hd=store[f"HD_{n}"]: [_HDR.pack(*hd)]
            elif m.kind == "cms":
                tables[n] = values(store[f"CM_{n}"], _Q.pack)
        return tables

    def map_contents(self, name: str) -> list:
        return self._tables[name]()
