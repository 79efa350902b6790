"""Differential tests: the kernel (the generated C under BPF_PROG_TEST_RUN) against
the reference interpreter (runtime/engines/reference/), frame for frame.

After the same frames, the two engines must hold the same raw map bytes (hash
maps compared as {key bytes: value bytes}; arrays element by element, so
HyperLogLog registers and count-min counters are equal), the same counters name
by name (frames, parse outcomes by reason, verdicts, insert failures, events,
ring buffer full, rate limited, rules fired), the same params and enable state,
the same events in the same order (both engines poll their ring buffers after
every frame, or every 4096 frames to fill them), and so the same snapshot.
Every frame the kernel runs must get XDP_PASS, and both engines refuse the
same frames.

- the corpus ../shared/corpus/tcpdump-tests/ (read in place), every frame of
  every Ethernet pcap/pcapng, in sorted file order on each frame's own
  timestamp, through ONE pair of engines per variant: all of specs/ merged with
  their default params, the same with every param 0 (so that every T3 rule fires:
  events, rate limits, the on-demand syn_flood enabled), and a coverage spec
  (count-min sketches, unkeyed values, windows of 10 ms..1 s, a full size-8 map,
  an on-demand app with a track table, arithmetic and bitwise and);
- synthetic traffic from examples/traffic/generators.py, per generator;
- hypothesis: generator frames truncated, extended with random bytes (across the
  3504-byte linear part) and overwritten;
- crafted edge cases: refused sizes, the linear boundary, ring buffers filling up,
  and the generated C's known quirks (which the reference reproduces).

LRU maps: the kernel's LRU hash is approximate (per-CPU free lists, it may evict
before it is full); the reference keeps an exact LRU. Every LRU map here (track
tables of 65536, ``on full lru`` maps of 4096) stays far below its size, so all
maps are compared exactly.

The kernel engines are loaded once per spec set and reset (every map cleared,
params re-initialised) before each test; the reset is checked against a fresh
reference engine.
"""

from __future__ import annotations

import collections
import functools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.driver import compile_files
from runtime.capture.pcap import CaptureError, read_frames
from runtime.engines.reference.engine import LINEAR, MAX_FRAME, ReferenceEngine
from runtime.abi.records import decode_fields
from runtime.abi.snapshot import hll_registers
from runtime.engines.base import ReplayStats
from runtime.engines.kernel import KernelEngine
from spec_helpers import rule_fired

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("XDPMON_CORPUS", ROOT.parent / "shared" / "corpus" / "tcpdump-tests"))
SPECS = sorted(str(p) for p in (ROOT / "specs").glob("*.mon"))
XDP_PASS = 2
MS = 1_000_000
S = 1_000_000_000

COVERAGE_SPEC = """
app cov {
  t1 { select ip }
  t2 {
    heavy  = cms(ip.src, width=64, depth=3)
    heavyw = cms(ip.dst, l4.dport, width=128, depth=2) window 1s
    tot    = count(), sum(pkt.len) as bytes, min(pkt.len) as lo, max(pkt.len) as hi, hist(pkt.len) window 100ms
    glob   = count(), hist(ip.ttl) as ttls
    u      = distinct(ip.src, registers=16) window 10ms
    ttl    = min(ip.ttl) as lo, max(ip.ttl) as hi, hist(ip.ttl) by ip.proto window 50ms
    full   = count() by (ip.src, l4.sport) size 8
    v6     = count() by ipv6.src where ipv6 and ip.dst in {2001:2::/48, 198.19.0.0/16}
    vl     = count(), sum(pkt.len) as bytes by (vlan.id, vlan.inner) where vlan.depth >= 1
    lr     = count(), max(pkt.ts) as last by ip.dst size 4096 on full lru
  }
  t3 {
    when heavy > param h = 5 and heavyw > 2 {
      send packet(ip.src, ip.dst, l4.dport, pkt.len, tcp.flags, vlan.id, eth.src, ipv4.src, tcp.syn) to asl limit 50/s
    }
    when tot.count > 20 and u < 1000 { alert "busy" limit 5/s }
    when tot.count > param n = 30 { enable od for 300ms }
    when full[ip.src, l4.sport] >= 2 or ip.ttl - 60 < 10 / (ip.ttl - 64) + ip.ttl * 3 - 200 { alert "arith" limit 3/s }
    when tot.count & 7 == 3 and ip.ttl & 0xf0 != 0 and pkt.len & 3 in {1, 2} { alert "bits" limit 4/s }
  }
}
app od {
  mode on_demand
  t1 { select tcp }
  t2 {
    o = count(), sum(pkt.len) as bytes by tcp.dport window 100ms
    syn_only = count() by tcp.dport where tcp.flags & 0x12 == 0x02 window 100ms
    p = track (ip.src, tcp.sport) open when tcp.syn close when tcp.fin or tcp.rst expire 200ms
  }
  t3 { when size(p) > 3 and o.count > 1 { send summary to asl every 100ms } }
}
"""


# ---- engines ------------------------------------------------------------------------------

class Pool:
    """One loaded kernel program per spec set, reset for each test."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.loaded: dict[str, tuple] = {}

    def artifacts(self, name: str, spec: str | None = None):
        if name not in self.loaded:
            if spec is None:
                paths = SPECS
            else:
                path = self.tmp / f"{name}.mon"
                path.write_text(spec)
                paths = [str(path)]
            # "staged": every map and T3 block in a stage of its own (tail calls)
            art = compile_files(paths, replay=True, **({"stage_budget": 1} if name == "staged" else {}))
            self.loaded[name] = (art, KernelEngine(art))
        return self.loaded[name]

    def fresh(self, name: str, spec: str | None = None, params: int | None = None, poll_every: int = 1):
        """(kernel engine reset to zero, a new reference engine, artifacts); both
        poll their ring buffers every ``poll_every`` frames."""
        art, ker = self.artifacts(name, spec)
        reset_kernel(ker)
        ker.poll_every = poll_every
        ref = ReferenceEngine(art, poll_every=poll_every)
        assert_same(ker, ref, art.manifest, f"{name} after reset")
        if params is not None:
            for s in art.manifest["params"]["slots"]:
                ker.maps.set_param(s["app"], s["name"], params)
                ref.maps.set_param(s["app"], s["name"], params)
        return ker, ref, art

    def close(self):
        for _, ker in self.loaded.values():
            ker.close()


def reset_kernel(ker: KernelEngine) -> None:
    ker.maps.poll_events()
    bpf = ker.loaded.bpf
    # (the scratch too: it keeps, per CPU, until when each full map is not tried again)
    names = ["xm_counters", "xm_ctl", "xm_rl", "xm_params", "xm_scratch"] + [m.name for m in ker.manifest.state_maps]
    for n in names:
        bpf[n].clear()
    ker.maps.init()
    ker.events.take()
    ker.stats = ReplayStats()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The kernel's test runs on one CPU (runtime/engines/kernel.py on_one_cpu): the corpus's
    captures go back in time from one file to the next, and a statistic kept per CPU
    combines its copies by their latest window, so a test that moved between CPUs read
    other values than the reference's one shared map."""
    from runtime.engines.kernel import on_one_cpu

    p = Pool(tmp_path_factory.mktemp("specs"))
    with on_one_cpu():
        yield p
    p.close()


# ---- comparison ------------------------------------------------------------------------------

def _is_hash(items) -> bool:
    return bool(items) and isinstance(items[0], tuple)


def state_diff(ker, ref, manifest, now=None) -> list[str]:
    """Every difference between the two engines' states (empty: the same)."""
    out = []
    rk, rr = ker.maps.raw_state(), ref.maps.raw_state()
    maps = {m["name"]: m for m in manifest["maps"]}
    for name in sorted(set(rk.maps) | set(rr.maps)):
        a, b = rk.maps.get(name, []), rr.maps.get(name, [])
        if _is_hash(a) or _is_hash(b):
            da, db = dict(a), dict(b)
            if da == db:
                continue
            m = maps.get(name)
            show = (lambda k: decode_fields(m["key"], k)) if m and m.get("key") else (lambda k: k.hex())
            only_k = [show(k) for k in da.keys() - db.keys()]
            only_r = [show(k) for k in db.keys() - da.keys()]
            vals = [show(k) for k in da.keys() & db.keys() if da[k] != db[k]]
            out.append(f"map {name}: {len(da)} vs {len(db)} entries; only in kernel {only_k[:3]}; "
                       f"only in reference {only_r[:3]}; values differ for {len(vals)} keys {vals[:3]}")
        elif a != b:
            idx = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
            out.append(f"array {name}: {len(a)} vs {len(b)} elements, {len(idx)} differ, e.g. "
                       f"{[(i, a[i].hex(), b[i].hex()) for i in idx[:3]]}")
    now = ker.stats.last_ts if now is None else now
    for m in manifest["maps"]:
        if m["kind"] == "hll":
            for s in m["slots"]:
                if hll_registers(m, s, rk, now) != hll_registers(m, s, rr, now):
                    out.append(f"HyperLogLog registers of {m['name']}/{s['name']} differ")
    names = manifest["counters"]["names"]
    for i, name in enumerate(names):
        if rk.counters[i] != rr.counters[i]:
            out.append(f"counter {name}: kernel {rk.counters[i]}, reference {rr.counters[i]}")
    if rk.params != rr.params:
        out.append(f"params: kernel {rk.params}, reference {rr.params}")
    if (rk.ctl_mask, rk.ctl_until) != (rr.ctl_mask, rr.ctl_until):
        out.append(f"control: kernel {(rk.ctl_mask, rk.ctl_until)}, reference {(rr.ctl_mask, rr.ctl_until)}")
    sk, sr = ker.snapshot(now), ref.snapshot(now)
    if sk["events"] != sr["events"]:
        first = next((i for i, (x, y) in enumerate(zip(sk["events"], sr["events"])) if x != y),
                     min(len(sk["events"]), len(sr["events"])))
        out.append(f"events: {len(sk['events'])} vs {len(sr['events'])}, first difference at #{first}: "
                   f"{sk['events'][first:first + 1]} vs {sr['events'][first:first + 1]}")
    if ker.events.dropped or ref.events.dropped:
        out.append(f"events dropped from the queues: kernel {ker.events.dropped}, reference {ref.events.dropped}; "
                   f"the comparison of events is incomplete")
    if sk != sr:
        apps = [a for a in sk["apps"] if sk["apps"][a] != sr["apps"].get(a)]
        out.append(f"snapshots differ (apps {apps})")
    if (ker.stats.frames, ker.stats.refused, ker.stats.verdicts) != (ref.stats.frames, ref.stats.refused, ref.stats.verdicts):
        out.append(f"replay stats: kernel {ker.stats}, reference {ref.stats}")
    return out


def assert_same(ker, ref, manifest, label, now=None) -> None:
    diff = state_diff(ker, ref, manifest, now)
    assert not diff, f"{label}: kernel and reference differ:\n  " + "\n  ".join(diff[:20])


def run_both(ker, ref, frames, label) -> int:
    """Run frames through both engines; every verdict must be XDP_PASS (or both
    refuse). Returns the number of frames the kernel ran."""
    ran = 0
    bad = []
    for i, (ts, data) in enumerate(frames):
        vk = ker.run_frame(ts, data)
        vr = ref.run_frame(ts, data)
        if vk is not None:
            ran += 1
        if vk != vr or (vk is not None and vk != XDP_PASS):
            bad.append((i, len(data), vk, vr))
    assert not bad, f"{label}: verdicts (frame, length, kernel, reference) {bad[:10]}"
    return ran


# ---- the corpus ---------------------------------------------------------------------------------

VARIANTS = {
    "specs": (None, None),
    "specs-params-0": (None, 0),
    "coverage": (COVERAGE_SPEC, None),
}


@functools.lru_cache(maxsize=1)
def corpus():
    """[(file name, [(ts, frame)])] of every readable Ethernet capture, and the
    skipped files by reason."""
    if not CORPUS.is_dir():
        return [], {}
    files, skipped = [], collections.Counter()
    for path in sorted(CORPUS.glob("*.pcap*")):
        try:
            frames = [(f.ts_ns, f.data) for f in read_frames(str(path))]
        except CaptureError as e:
            reason = "not Ethernet" if "link type" in str(e) else ("corrupt" if e.frames else "not a capture")
            skipped[reason] += 1
            continue
        files.append((path.name, frames))
    return files, dict(skipped)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_corpus(pool, variant):
    files, skipped = corpus()
    if not files:
        msg = f"corpus not found at {CORPUS}"
        if os.environ.get("XDPMON_REQUIRE_KERNEL") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    spec, params = VARIANTS[variant]
    name = "specs" if spec is None else variant
    ker, ref, art = pool.fresh(name, spec, params)
    names = art.manifest["counters"]["names"]
    failures = {}
    ran = total = 0
    for i, (fname, frames) in enumerate(files):
        ran += run_both(ker, ref, frames, fname)
        total += len(frames)
        kc, rc = ker.maps.counters(), ref.maps.counters()
        if kc != rc:
            failures[fname] = {names[j]: (kc[j], rc[j]) for j in range(len(names)) if kc[j] != rc[j]}
        if i % 100 == 99:
            diff = state_diff(ker, ref, art.manifest)
            if diff:
                failures[f"state after {fname}"] = diff
    print(f"\n[differential corpus {variant}] {len(files)} files, {total} frames compared "
          f"({ran} run, {total - ran} refused by both), skipped files {skipped or 'none'}, "
          f"files with failures: {len(failures)}; events {len(ref.snapshot()['events'])}")
    assert not failures, f"per-file differences: {dict(list(failures.items())[:5])}"
    assert_same(ker, ref, art.manifest, f"corpus ({variant})")
    c = ker.snapshot()["counters"]
    assert c["frames"] == ran and c["verdict.pass"] == ran
    assert sum(c[f"parse.{o['name']}"] for o in art.manifest["abi"]["parse_outcomes"]) == ran
    if variant == "specs-params-0":
        # every rule fired and the chain flow_watch -> syn_flood ran
        rules = [k for k in c if k.startswith("rule.")]
        assert all(c[k] > 0 for k in rules), {k: c[k] for k in rules}


# ---- synthetic traffic -----------------------------------------------------------------------------

def _gen():
    from examples.traffic import generators as g
    return g


GENERATORS = {
    "benign_tcp_flows": lambda g: g.benign_tcp_flows(100, 1),
    "dns_traffic": lambda g: g.dns_traffic(150, 2),
    "syn_flood": lambda g: g.syn_flood(7500, 4),       # > 5000 flows/s: flow_watch enables syn_flood
    "port_scan": lambda g: g.port_scan(300, 5),
    "vlan_qinq": lambda g: g.vlan_qinq(100, 6),
    "ipv6_ext_headers": lambda g: g.ipv6_ext_headers(100, 7),
    "ipv4_options": lambda g: g.ipv4_options(100, 8),
    "fragments": lambda g: g.fragments(40, 9),
    "dns_amplification": lambda g: g.dns_amplification(600, 3),
    "mixed": lambda g: g.mixed(11),
}


@functools.lru_cache(maxsize=None)
def traffic(name: str):
    return GENERATORS[name](_gen())


@pytest.mark.parametrize("variant", ["specs", "specs-params-1", "coverage", "staged"])
@pytest.mark.parametrize("gen", list(GENERATORS))
def test_synthetic(pool, gen, variant):
    if variant == "coverage":
        ker, ref, art = pool.fresh("coverage", COVERAGE_SPEC)
    elif variant == "staged":
        ker, ref, art = pool.fresh("staged", None)
        assert len(art.manifest["stages"]["functions"]) == 1 + len(art.manifest["maps"]) + sum(
            1 for a in art.manifest["apps"] if a["rules"])
    else:
        ker, ref, art = pool.fresh("specs", None, 1 if variant == "specs-params-1" else None)
    frames = traffic(gen)
    run_both(ker, ref, frames, gen)
    assert_same(ker, ref, art.manifest, f"{gen} ({variant})")
    if gen == "syn_flood" and variant == "specs":
        snap = ref.snapshot()
        assert [e["enabled"] for e in snap["events"] if e["type"] == "enable"] == ["syn_flood"]
        assert snap["counters"]["app.syn_flood.events"] > 0


def test_last_windows_agree(pool):
    """Both engines keep the same last completed windows: their snapshots agree read
    in the last frame's window and in the windows after it, and one window on, each
    windowed statistic's ``last_window`` is exactly what it showed as its value."""
    ker, ref, art = pool.fresh("coverage", COVERAGE_SPEC)
    run_both(ker, ref, traffic("mixed"), "mixed")
    end = ker.stats.last_ts
    for later in (0, 10, 50, 100, 200):
        assert_same(ker, ref, art.manifest, f"read {later} ms after the last frame", end + later * MS)
    at_end = ker.snapshot(end)["apps"]["cov"]["stats"]
    for name, window, first in (("tot", 100 * MS, "count"), ("u", 10 * MS, "distinct"), ("ttl", 50 * MS, "hi")):
        then = ker.snapshot(end + window)["apps"]["cov"]["stats"][name]
        if isinstance(then, dict):                      # unkeyed
            assert then["last_window"] == at_end[name]["value"] and then["last_window"][first] > 0
        else:                                           # keyed: every key of then is a key of the last window
            assert {str(e["key"]): e["last_window"] for e in then} == {str(e["key"]): e["value"] for e in at_end[name]}
            assert then and all(e["value"][first] == 0 and e["last_window"][first] > 0 for e in then)


@functools.lru_cache(maxsize=1)
def mutation_pool():
    return [f for _, f in traffic("mixed")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["cut", "grow", "poke", "cut+poke", "same"]),
                              st.integers(0, 4000), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                                             max_size=5), st.binary(max_size=64)),
                    min_size=1, max_size=25),
       t0=st.integers(0, 10 * S), step=st.integers(0, 50 * MS), params=st.sampled_from([None, 0, 1]),
       spec=st.sampled_from(["specs", "coverage"]))
def test_mutated_frames(pool, ops, t0, step, params, spec):
    base = mutation_pool()
    frames = []
    for i, (pick, kind, n, pokes, tail) in enumerate(ops):
        fr = bytearray(base[pick % len(base)])
        if "cut" in kind:
            fr = fr[: n % (len(fr) + 1)]
        if kind == "grow":
            fr += (tail or b"\x00") * (n // max(1, len(tail) or 1))
        if "poke" in kind:
            for pos, val in pokes:
                if pos < len(fr):
                    fr[pos] = val
        frames.append((t0 + i * step, bytes(fr)))
    ker, ref, art = pool.fresh(spec, COVERAGE_SPEC if spec == "coverage" else None, params)
    run_both(ker, ref, frames, "mutations")
    assert_same(ker, ref, art.manifest, "mutations")


# ---- crafted edge cases ------------------------------------------------------------------------------

def _v6_udp_ending_at(udp_end: int, total: int) -> bytes:
    ext = udp_end - 8 - 54
    h1, h2 = 2048, ext - 2048
    ip6 = bytes([0x60, 0, 0, 0]) + (total - 54).to_bytes(2, "big") + bytes([60, 64]) + bytes(15) + b"\x01" + \
        bytes(15) + b"\x02"
    f = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip6 + bytes([60, h1 // 8 - 1]) + bytes(h1 - 2) + \
        bytes([17, h2 // 8 - 1]) + bytes(h2 - 2) + bytes([0, 1, 0, 53, 0, 8, 0, 0])
    return f + bytes(total - len(f))


def test_sizes_and_linear_boundary(pool):
    ker, ref, art = pool.fresh("specs", None, 0)
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06"
    frames = [(S, arp[:n]) for n in (0, 1, 13)] + [(S, arp + bytes(n - 14)) for n in (14, 60, LINEAR, LINEAR + 1, 9000,
                                                                                     MAX_FRAME, MAX_FRAME + 1)]
    for udp_end in range(3502, 3534, 8):
        for total in (udp_end, udp_end + 8, 6000):
            frames.append((S + udp_end, _v6_udp_ending_at(udp_end, total)))
    run_both(ker, ref, frames, "sizes")
    assert_same(ker, ref, art.manifest, "sizes")
    c = ref.snapshot()["counters"]
    assert c["replay.refused"] == 4 and c["parse.truncated_udp"] > 0 and c["parse.truncated_dns"] > 0


def test_ring_buffers_fill_up(pool):
    spec = """app r { t1 { select ip } t3 { when pkt.len > 0 {
      send packet(ip.src, ip.dst, eth.src, eth.dst, pkt.len, pkt.ts, ip.ttl, ip.proto, l4.sport, l4.dport,
                  ipv6.flow, ip.version) to asl limit 4294967295/s } } }
    app q { t1 { select tcp } t3 { when tcp.syn { alert "syn" limit 4294967295/s } } }"""
    ker, ref, art = pool.fresh("ringbuf", spec, poll_every=8192)     # 8192 records > the 512 KiB ring
    frames = [(S + i * 1000, f) for i, (_, f) in enumerate(traffic("syn_flood")[:9000])]
    run_both(ker, ref, frames, "ringbuf")
    assert_same(ker, ref, art.manifest, "ringbuf")
    assert ref.snapshot()["counters"]["app.r.ringbuf_full"] > 0


EDGE_SPECS = {
    # Fixed in the C (a __u8 once truncated the dns layer bit): a T3 read of a stat keyed
    # by a dns (or icmp/icmp6) field.
    "dns_key_read": ('app d { t1 { select udp.port == 53 } t2 { r = count() by dns.rcode } '
                     't3 { when r > 0 { alert "x" limit 1000/s } } }', "dns_traffic"),
    # Fixed in the C: send packet(...) sends fields of absent layers as 0 (it once copied
    # the shared storage: tcp.dport of a UDP packet was its UDP port).
    "absent_event_fields": ('app s { t1 { select ip } t3 { when pkt.len > 0 { send packet(tcp.dport, dns.id, icmp.type) '
                            'to asl limit 1000/s } } }', "mixed"),
    # Fixed in the C during this work (commit 000bb88), kept as regressions: a new window
    # clears a keyed distinct's registers, and a never-updated keyed distinct reads 0.
    "window_clears_registers": ("app u { t2 { d = distinct(l4.sport) by ip.src window 1ms } }", "port_scan"),
    "never_updated_distinct": ('app k { t2 { a = count() by ip.src window 1s\n b = distinct(l4.dport) by ip.src window 1s '
                               'where tcp }\n t3 { when b > 1000 { alert "b" limit 1000/s } } }', "dns_traffic"),
}


@pytest.mark.parametrize("case", list(EDGE_SPECS))
def test_edge_specs(pool, case):
    """The reference does what the C does, including the quirks reported as C bugs
    (tests/test_reference.py pins each one's effect): when the C changes, this
    fails until runtime/engines/reference/pycompile.py follows."""
    spec, gen = EDGE_SPECS[case]
    ker, ref, art = pool.fresh(f"edge_{case}", spec)
    run_both(ker, ref, traffic(gen), case)
    assert_same(ker, ref, art.manifest, case)
    snap = ref.snapshot()
    c = snap["counters"]
    if case == "dns_key_read":
        assert rule_fired(c) == c["parse.ok"] > 0
    if case == "absent_event_fields":
        assert snap["events"] and not [e for e in snap["events"] if e["fields"]["tcp.dport"] == 53]
    if case == "never_updated_distinct":
        assert rule_fired(c) == 0


def test_operator_control(pool):
    """set_param / set_enabled between frames, on both engines."""
    ker, ref, art = pool.fresh("specs")
    frames = traffic("mixed")
    half = len(frames) // 2
    run_both(ker, ref, frames[:half], "first half")
    for eng in (ker.maps, ref.maps):
        eng.set_enabled("syn_flood", (1 << 64) - 1)
        eng.set_param("syn_flood", "per_dst", 2)
        eng.set_param("port_scan", "max_ports", 3)
    run_both(ker, ref, frames[half:], "second half")
    assert_same(ker, ref, art.manifest, "operator control")
    for eng in (ker.maps, ref.maps):
        eng.set_enabled("syn_flood", 0)
    late = [(ts + 10 * S, f) for ts, f in frames[:200]]
    run_both(ker, ref, late, "after disable")
    assert_same(ker, ref, art.manifest, "after disable")
