"""The reference interpreter (runtime/engines/reference/) on its own: no root, no kernel.

- Its parser (runtime/engines/reference/pyparse.py, rendered Python) against
  runtime/engines/reference/decoder.py -- which tests/test_parse_kernel.py holds equal to
  the kernel -- on every corpus frame, for several layer requests, and on
  hypothesis-mutated frames.
- Exact expected snapshots of crafted inputs: the cases of
  tests/test_kernel_semantics.py, with the same expected values.
- Replay edge cases (refused frames, the linear part of long frames, ring buffers).
- Pins of the generated C's surprising behaviours that the reference reproduces on
  purpose (tests/test_differential.py checks them against the kernel too).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, Dot1Q, Ether, IP, IPv6, IPv6ExtHdrDestOpt, TCP, UDP

from compiler import parse_outcomes as po
from compiler.c_fields import LAYER_BITS
from compiler.driver import compile_files
from dsl.fields import FIELDS
from runtime.abi import hll
from runtime.engines.reference import decoder, pyparse
from runtime.engines.reference.engine import LINEAR, MAX_FRAME, ReferenceEngine

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("XDPMON_CORPUS", ROOT.parent / "shared" / "corpus" / "tcpdump-tests"))
S = 1_000_000_000


def Eth(**kw):
    """Ethernet with explicit addresses (scapy would otherwise resolve them, on the network)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


# ---- the parser ---------------------------------------------------------------------------

LAYER_SETS = [
    decoder.ALL_LAYERS,
    frozenset({"eth", "pkt"}),
    po.close_layers({"tcp"}),
    po.close_layers({"udp"}),
    po.close_layers({"dns"}),
    po.close_layers({"ipv4"}),
    po.close_layers({"ipv6", "icmp6"}),
    po.close_layers({"icmp"}),
    po.close_layers({"vlan"}),
]


_DERIVE_SRC = "lambda %s: {%s}" % (", ".join(list(pyparse.STORAGE) + ["plen", "ts", "L"]), ", ".join(
    f"{name!r}: ({pyparse.field_expr(name)})" for name, f in FIELDS.items() if not f.either))
_DERIVE = None


def _fields_from_storage(outcome, layers_mask, storage, frame):
    """The catalog fields of the present layers, read from storage (as the C reads them)."""
    global _DERIVE
    if _DERIVE is None:
        _DERIVE = eval(compile(_DERIVE_SRC, "<fields>", "eval"))     # noqa: S307 (our own expressions)
    present = {name for name, bit in LAYER_BITS.items() if layers_mask & bit}
    allf = _DERIVE(**storage, plen=len(frame), ts=0, L=layers_mask)
    out = {name: v for name, v in allf.items() if FIELDS[name].layer in present}
    for name, f in FIELDS.items():
        if f.either and f.layer in present:
            out[name] = (out[f.either[0]], out[f.either[1]])
    return po.name(outcome), present, out


def _agree(fn, layers, ext_max, frame, end):
    got = _fields_from_storage(*fn(frame, end), frame)
    d = decoder.decode(frame, layers, ipv6_ext_max=ext_max, linear=end)
    want = (d.outcome, set(d.layers), dict(d.fields, **{"pkt.ts": 0}))
    assert got == want, (sorted(layers), ext_max, end, frame[:80].hex())


def _corpus_frames():
    from runtime.capture.pcap import CaptureError, read_frames

    out = []
    for path in sorted(CORPUS.glob("*.pcap*")):
        try:
            out.extend(fr.data for fr in read_frames(str(path)))
        except CaptureError:
            continue
    return out


def test_field_expressions_cover_the_catalog():
    assert pyparse.check_catalog() == []


@pytest.mark.parametrize("layers", LAYER_SETS, ids=lambda s: "+".join(sorted(s)))
def test_parser_matches_decoder_on_corpus(layers):
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    frames = [fr for fr in _corpus_frames() if len(fr) >= 14]
    assert len(frames) > 1000
    fn = pyparse.decoder_function(layers, 6)
    for fr in frames:
        _agree(fn, layers, 6, fr, min(len(fr), LINEAR))
    if layers == decoder.ALL_LAYERS:        # a shorter linear part and another bound
        fn = pyparse.decoder_function(layers, 1)
        for fr in frames:
            _agree(fn, layers, 1, fr, min(len(fr), 54))


@functools.lru_cache(maxsize=None)
def _decoder_fn(layers, ext_max):
    return pyparse.decoder_function(layers, ext_max)


@functools.lru_cache(maxsize=1)
def _base_frames():
    v6 = IPv6(src="2001:2::1", dst="2001:2::2")
    return [
        bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1", options=b"\x94\x04\x00\x00") / TCP(flags="S")),
        bytes(Eth() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(sport=53) / DNS(qr=1, rcode=3)),
        bytes(Eth() / v6 / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP(dport=53) / DNS(qd=DNSQR(qname="x"))),
        bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1", flags="MF", frag=0) / UDP() / (b"z" * 30)),
        bytes(Eth() / v6 / TCP(sport=1, dport=2, flags="SA")),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.integers(0, 4), edits=st.lists(st.tuples(st.integers(12, 90), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 200), layers=st.sampled_from(LAYER_SETS), ext_max=st.sampled_from([6, 0, 2]))
def test_parser_matches_decoder_on_mutations(base, edits, cut, layers, ext_max):
    fr = bytearray(_base_frames()[base])
    for pos, val in edits:
        if pos < len(fr):
            fr[pos] = val
    fr = bytes(fr[: max(14, len(fr) - cut)])
    _agree(_decoder_fn(layers, ext_max), layers, ext_max, fr, len(fr))


# ---- the engine: the cases of tests/test_kernel_semantics.py ---------------------------------

@pytest.fixture
def engine(tmp_path):
    made = []

    def make(spec: str):
        path = tmp_path / f"spec{len(made)}.mon"
        path.write_text(spec)
        eng = ReferenceEngine(compile_files([str(path)], replay=True))
        made.append(eng)
        return eng

    yield make
    for e in made:
        e.close()


def tcp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=80, flags="S", pad=0):
    return bytes(Eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / (b"x" * pad))


def udp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=53, pad=0):
    return bytes(Eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"x" * pad))


def run(eng, frames, t0=S, step=1000):
    for i, f in enumerate(frames):
        eng.run_frame(t0 + i * step, f)


def stat(snap, app, name):
    return snap["apps"][app]["stats"][name]


def test_count_and_sum_by_key(engine):
    eng = engine("app acc { t1 { select ip } t2 { d = count() as n, sum(pkt.len) as bytes by ip.dst } }")
    frames = [tcp(dst="198.19.0.1")] * 3 + [udp(dst="198.19.0.2", pad=10)] * 2 + [bytes(Eth(type=0x0806) / (b"\0" * 28))]
    run(eng, frames)
    snap = eng.snapshot()
    assert stat(snap, "acc", "d") == [
        {"key": {"ip.dst": "198.19.0.1"}, "value": {"n": 3, "bytes": 3 * 54}},
        {"key": {"ip.dst": "198.19.0.2"}, "value": {"n": 2, "bytes": 2 * 52}},
    ]
    c = snap["counters"]
    assert (c["frames"], c["parse.ok"], c["parse.non_ip"], c["verdict.pass"]) == (6, 5, 1, 6)
    assert eng.stats.verdicts == {2: 6} and eng.stats.refused == 0


def test_shared_slot_serves_both_apps(engine):
    eng = engine("""
app a { t1 { select tcp } t2 { s = count() by ip.src } }
app b { t1 { select tcp } t2 { s = count() by ip.src } }
""")
    assert len(eng.manifest.raw["maps"]) == 1 and len(eng.manifest.raw["maps"][0]["slots"]) == 1
    run(eng, [tcp(src="198.18.0.7")] * 4 + [udp()])
    snap = eng.snapshot()
    want = [{"key": {"ip.src": "198.18.0.7"}, "value": {"count": 4}}]
    assert stat(snap, "a", "s") == want and stat(snap, "b", "s") == want


def test_where_guard_and_either_port(engine):
    eng = engine("""app d { t1 { select udp.port == 53 }
      t2 { all = count() by ip.src
           big = count() by ip.src where pkt.len > 100 } }""")
    run(eng, [udp(sport=53, dport=999), udp(sport=999, dport=53, pad=100), udp(sport=1, dport=2), tcp(dport=53)])
    snap = eng.snapshot()
    assert stat(snap, "d", "all") == [{"key": {"ip.src": "198.18.0.1"}, "value": {"count": 2}}]
    assert stat(snap, "d", "big") == [{"key": {"ip.src": "198.18.0.1"}, "value": {"count": 1}}]


def test_tumbling_window_resets(engine):
    eng = engine("app w { t2 { c = count() by ip.dst window 1s } }")
    run(eng, [tcp()] * 3, t0=5 * S + 100)
    assert stat(eng.snapshot(), "w", "c") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 3}}]
    run(eng, [tcp()] * 2, t0=6 * S + 100)
    assert stat(eng.snapshot(), "w", "c") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 2}}]
    assert stat(eng.snapshot(now=8 * S), "w", "c") == []


def test_min_max_hist(engine):
    eng = engine("app s { t2 { z = min(pkt.len) as lo, max(pkt.len) as hi, hist(pkt.len) by ip.proto } }")
    run(eng, [tcp(pad=0), tcp(pad=100), udp(pad=1000)])
    assert stat(eng.snapshot(), "s", "z") == [
        {"key": {"ip.proto": 6}, "value": {"lo": 54, "hi": 154, "hist_pkt_len": {"32-63": 1, "128-255": 1}}},
        {"key": {"ip.proto": 17}, "value": {"lo": 1042, "hi": 1042, "hist_pkt_len": {"1024-2047": 1}}},
    ]


def test_distinct_matches_python_mirror(engine):
    eng = engine("""app u { t2 { flows = distinct(ip.src, l4.sport)
                               per = distinct(l4.sport) by ip.src } }""")
    run(eng, [tcp(src=f"198.18.{i // 250}.{i % 250}", sport=1000 + i) for i in range(300)])
    snap = eng.snapshot()
    flows = stat(snap, "u", "flows")["value"]["distinct"]
    assert abs(flows - 300) <= 300 * 0.05
    per = stat(snap, "u", "per")
    assert len(per) == 300 and {e["value"]["distinct"] for e in per} == {1}
    m = next(m for m in eng.manifest.raw["maps"] if m["kind"] == "hll")
    slot = m["slots"][0]
    raw = eng.maps.raw_state()
    regs = [int.from_bytes(v[:8], "little") & 0xFF for v in raw.maps[m["name"]]]
    assert flows == hll.estimate(sum(hll.hll_pow(r, eng.manifest.constants.hll_scale_bits) for r in regs), regs.count(0), 4096,
                                 slot["hll"]["am2"], slot["hll"]["log2m_fp"])


def test_track_open_close_expire(engine):
    eng = engine("""app h { t1 { select tcp }
      t2 { pending = track (ip.src, ip.dst, tcp.sport, tcp.dport)
                     open when tcp.syn and not tcp.ack close when tcp.ack and not tcp.syn expire 8s } }""")
    run(eng, [tcp(sport=1), tcp(sport=2), tcp(sport=3), tcp(sport=2, flags="A"), tcp(sport=1, flags="SA")], t0=100 * S)
    pending = stat(eng.snapshot(), "h", "pending")
    assert pending["size"] == 2
    assert sorted(e["key"]["tcp.sport"] for e in pending["open"]) == [1, 3]
    assert stat(eng.snapshot(now=100 * S + 8 * S), "h", "pending")["size"] == 0


def test_rate_limited_events_and_counters(engine):
    eng = engine("""app r { t1 { select tcp }
      t2 { c = count() by ip.dst }
      t3 { when c > param limit = 2 { send packet(ip.src, tcp.dport) to asl limit 2/s
                                      alert "too many" limit 1/s } } }""")
    run(eng, [tcp(dport=80 + i) for i in range(7)], t0=50 * S)
    snap = eng.snapshot()
    packets = [e for e in snap["events"] if e["type"] == "packet"]
    alerts = [e for e in snap["events"] if e["type"] == "alert"]
    assert [e["fields"] for e in packets] == [{"ip.src": "198.18.0.1", "tcp.dport": 82},
                                              {"ip.src": "198.18.0.1", "tcp.dport": 83}]
    assert packets[0] == {"ts": 50 * S + 2000, "app": "r", "rule": 0, "action": 0, "type": "packet",
                          "fields": {"ip.src": "198.18.0.1", "tcp.dport": 82}}
    assert [e["message"] for e in alerts] == ["too many"]
    c = snap["counters"]
    assert c["rule.0.fired"] == 5
    assert c["app.r.events"] == 3 and c["app.r.rate_limited"] == (5 - 2) + (5 - 1)
    run(eng, [tcp(dport=99)], t0=51 * S + 2000)
    assert len(eng.snapshot()["events"]) == 5


def test_param_changes_at_run_time(engine):
    eng = engine("""app q { t2 { c = count() by ip.dst }
      t3 { when c > param limit = 100 { alert "x" limit 1000/s } } }""")
    run(eng, [tcp()] * 3)
    assert eng.snapshot()["counters"]["rule.0.fired"] == 0
    eng.maps.set_param("q", "limit", 1)
    run(eng, [tcp()] * 3, t0=2 * S)
    assert eng.snapshot()["counters"]["rule.0.fired"] == 3
    assert eng.snapshot()["apps"]["q"]["params"] == {"limit": 1}


def test_on_demand_app_enabled_by_trigger_then_expires(engine):
    eng = engine("""
app watch { t1 { select tcp } t2 { c = count() window 1s }
            t3 { when c >= param n = 3 { enable od for 2s } } }
app od { mode on_demand t1 { select tcp } t2 { seen = count() by ip.dst } }
""")
    run(eng, [tcp()] * 2, t0=10 * S)
    snap = eng.snapshot()
    assert snap["apps"]["od"]["enabled"] is False and stat(snap, "od", "seen") == []
    run(eng, [tcp()] * 4, t0=11 * S)
    snap = eng.snapshot()
    assert snap["apps"]["od"]["enabled"] is True
    assert stat(snap, "od", "seen") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 1}}]
    assert [e["enabled"] for e in snap["events"] if e["type"] == "enable"] == ["od"]
    run(eng, [tcp()], t0=14 * S)
    snap = eng.snapshot()
    assert snap["apps"]["od"]["enabled"] is False
    assert stat(snap, "od", "seen") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 1}}]


def test_operator_enable_and_disable(engine):
    eng = engine("app od { mode on_demand t2 { seen = count() } }")
    run(eng, [tcp()])
    eng.maps.set_enabled("od", (1 << 64) - 1)
    run(eng, [tcp()] * 2, t0=2 * S)
    eng.maps.set_enabled("od", 0)
    run(eng, [tcp()] * 4, t0=3 * S)
    snap = eng.snapshot()
    assert stat(snap, "od", "seen") == {"value": {"count": 2}} and snap["apps"]["od"]["enabled"] is False
    assert snap["events"] == []


def test_full_map_is_counted_and_lru_evicts(engine):
    eng = engine("""app f { t2 { a = count() by ip.src size 4
                                 b = count() by ip.dst size 4 on full lru } }""")
    run(eng, [tcp(src=f"198.18.0.{i}", dst=f"198.19.0.{i}") for i in range(10)])
    snap = eng.snapshot()
    assert [e["key"]["ip.src"] for e in stat(snap, "f", "a")] == [f"198.18.0.{i}" for i in range(4)]
    assert snap["counters"]["map.m0.insert_failed"] == 6
    # the reference's LRU is exact: the 4 most recent keys remain
    assert sorted(e["key"]["ip.dst"] for e in stat(snap, "f", "b")) == [f"198.19.0.{i}" for i in range(6, 10)]
    assert snap["counters"]["map.m1.insert_failed"] == 0


def test_addresses_prefixes_vlan_ipv6(engine):
    eng = engine("""app p {
      t1 { select ip.src in {198.18.0.0/24, 2001:db8::/32} and not ip.dst == 198.19.0.9 }
      t2 { by_vlan = count() by vlan.id
           v6 = count() where ipv6 } }""")
    frames = [
        bytes(Eth() / Dot1Q(vlan=100) / IP(src="198.18.0.5", dst="198.19.0.1") / TCP()),
        bytes(Eth() / Dot1Q(vlan=100) / IP(src="198.18.1.5", dst="198.19.0.1") / TCP()),
        bytes(Eth() / Dot1Q(vlan=200) / IP(src="198.18.0.5", dst="198.19.0.9") / TCP()),
        bytes(Eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP()),
        bytes(Eth() / IPv6(src="2001:db9::1", dst="2001:db8::2") / UDP()),
    ]
    run(eng, frames)
    snap = eng.snapshot()
    assert stat(snap, "p", "by_vlan") == [{"key": {"vlan.id": 100}, "value": {"count": 1}}]
    assert stat(snap, "p", "v6") == {"value": {"count": 1}}


def test_indexed_stat_read_and_arithmetic(engine):
    eng = engine("""app amp { t1 { select udp.port == 53 }
      t2 { q = sum(pkt.len) as bytes by ip.src where not dns.qr
           r = sum(pkt.len) as bytes by ip.dst where dns.qr }
      t3 { when dns.qr and r.bytes > (param ratio = 3) * q[ip.dst].bytes { alert "amp" limit 100/s } } }""")
    query = bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.53") / UDP(sport=999, dport=53) / DNS(rd=1, qd=DNSQR(qname="a.example")))
    resp = bytes(Eth() / IP(src="198.19.0.53", dst="198.18.0.1") / UDP(sport=53, dport=999) / DNS(qr=1, qd=DNSQR(qname="a.example")) / (b"y" * 200))
    run(eng, [query, resp])
    fired = eng.snapshot()["counters"]["rule.0.fired"]
    assert fired == (1 if len(resp) > 3 * len(query) else 0)
    run(eng, [resp] * 2, t0=2 * S)
    assert eng.snapshot()["counters"]["rule.0.fired"] == fired + 2


def test_cms_and_unkeyed_values(engine):
    eng = engine("""app c { t1 { select ip }
      t2 { heavy = cms(ip.src, width=64, depth=3)
           tot = count(), min(ip.ttl) as lo, max(ip.ttl) as hi window 1s }
      t3 { when heavy >= 3 and tot.count >= 3 { alert "heavy" limit 10/s } } }""")
    frames = [bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1", ttl=t) / UDP()) for t in (9, 3, 7, 5)]
    run(eng, frames + [udp(src="198.18.0.2")])
    snap = eng.snapshot()
    assert stat(snap, "c", "heavy") == {"value": {"cms_ip_src": {"total": 5, "width": 64, "depth": 3}}}
    assert stat(snap, "c", "tot") == {"value": {"count": 5, "lo": 3, "hi": 64}}
    assert snap["counters"]["rule.0.fired"] == 2          # the 3rd and 4th frames of 198.18.0.1


# ---- replay edge cases -----------------------------------------------------------------------------

def test_refused_frames_and_linear_part(engine):
    eng = engine("app a { t2 { c = count(), max(pkt.len) as big } }")
    assert eng.run_frame(S, b"\x00" * 13) is None
    assert eng.run_frame(S, b"\x00" * (MAX_FRAME + 1)) is None
    assert eng.run_frame(S, bytes(Eth(type=0x0806)) + b"\0" * (MAX_FRAME - 14)) == 2
    snap = eng.snapshot()
    assert snap["counters"]["replay.refused"] == 2 and snap["counters"]["frames"] == 1
    assert stat(snap, "a", "c") == {"value": {"count": 1, "big": MAX_FRAME}}
    assert (eng.stats.frames, eng.stats.refused) == (3, 2)


def _v6_udp_ending_at(udp_end: int, total: int) -> bytes:
    """IPv6 with two destination-options headers so that the UDP header ends at byte udp_end."""
    ext = udp_end - 8 - 54
    h1, h2 = 2048, ext - 2048
    ip6 = bytes([0x60, 0, 0, 0]) + (total - 54).to_bytes(2, "big") + bytes([60, 64]) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    f = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip6 + bytes([60, h1 // 8 - 1]) + bytes(h1 - 2) + \
        bytes([17, h2 // 8 - 1]) + bytes(h2 - 2) + bytes([0, 1, 0, 2, 0, 8, 0, 0])
    return f + bytes(total - len(f))


def test_parser_sees_3512_bytes_of_long_frames(engine):
    """Measured in the kernel (replay build): the 8-byte timestamp shares the 3520
    linear bytes, so headers past byte 3512 of the frame are cut off."""
    eng = engine("app a { t1 { select udp } t2 { c = count() } }")
    for udp_end in (3510, 3518):
        for total in (udp_end, 5000):
            eng.run_frame(S, _v6_udp_ending_at(udp_end, total))
    c = eng.snapshot()["counters"]
    assert (c["parse.ok"], c["parse.truncated_udp"]) == (2, 2)
    assert LINEAR == 3512 and MAX_FRAME == 73144


def test_ring_buffer_fills_between_polls(engine):
    eng = engine("""app r { t1 { select ip } t3 { when pkt.len > 0 {
      send packet(ip.src, ip.dst, eth.src, eth.dst, pkt.len, pkt.ts, ip.ttl, ip.proto, l4.sport, l4.dport,
                  ipv6.flow, ip.version) to asl limit 4294967295/s } } }""")
    eng.poll_every = 4096
    fr = tcp()
    for i in range(5000):
        eng.run_frame(S + i * 1000, fr)
    c = eng.snapshot()["counters"]
    # 88-byte records + 8-byte headers: 2730 fit in 256 KiB; polled after 4096 frames
    assert (c["app.r.events"], c["app.r.ringbuf_full"]) == (2730 + 904, 4096 - 2730)


def test_events_come_in_ring_order(engine):
    """KernelEngine drains each app's ring buffer in turn: events are grouped by app
    (manifest order) between polls, and in time order within an app."""
    eng = engine("""app a { t1 { select udp } t3 { when udp { alert "a" limit 1000/s } } }
                    app b { t1 { select tcp } t3 { when tcp { alert "b" limit 1000/s } } }""")
    eng.poll_every = 4096
    run(eng, [tcp(), udp(), tcp(), udp()])
    assert [e["app"] for e in eng.snapshot()["events"]] == ["a", "a", "b", "b"]


def test_interface(engine):
    eng = engine("app q { t2 { c = count() } t3 { when c > param n = 7 { alert \"x\" } } }")
    eng.maps.set_param("q", "n", 9)
    assert eng.maps.params() == [9] and eng.maps.raw_state().params == [9]
    with pytest.raises(OverflowError):
        eng.maps.set_param("q", "n", 1 << 64)
    art = compile_files([str(ROOT / "specs" / "traffic_accounting.mon")], replay=True)
    assert ReferenceEngine(art.ir).manifest == ReferenceEngine(art, art.manifest).manifest
    assert "def run(ts, data" in ReferenceEngine(art).source


# ---- what the generated C does that the reference reproduces on purpose ----------------------------

def test_t3_read_keyed_by_a_dns_field(engine):
    """A T3 read of a statistic keyed by a dns (icmp, icmp6) field. (The C once
    stored ``p->layers & XM_L_DNS`` in a __u8, truncating bit 10: never present.)"""
    eng = engine('app d { t1 { select udp.port == 53 } t2 { r = count() by dns.rcode } '
                 't3 { when r > 0 { alert "x" limit 1000/s } } }')
    dns = bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(sport=999, dport=53) / DNS(qd=DNSQR(qname="a.example")))
    run(eng, [dns] * 3)
    snap = eng.snapshot()
    assert stat(snap, "d", "r") == [{"key": {"dns.rcode": 0}, "value": {"count": 3}}]
    assert snap["counters"]["rule.0.fired"] == 3


def test_keyed_windowed_distinct_restarts_each_window(engine):
    """A new window clears a keyed distinct's registers. (Until commit 000bb88 the C
    reset only z: values seen in an earlier window were not counted again.)"""
    eng = engine("app u { t2 { d = distinct(l4.sport) by ip.src window 1s } }")
    run(eng, [tcp(sport=1000 + i) for i in range(100)], t0=S)
    want = [{"key": {"ip.src": "198.18.0.1"}, "value": {"distinct": 84}}]
    assert stat(eng.snapshot(), "u", "d") == want
    run(eng, [tcp(sport=1000 + i) for i in range(100)], t0=2 * S)
    assert stat(eng.snapshot(), "u", "d") == want


def test_keyed_distinct_read_before_any_value_is_zero(engine):
    """T3 reads 0 for a keyed distinct whose entry exists (another slot of its window
    group created it) but which saw no value. (Until commit 000bb88 the C read
    xm_hll_estimate(0, 0) = am2 << 16 there.)"""
    eng = engine('app k { t2 { a = count() by ip.src window 1s\n'
                 '             b = distinct(l4.dport) by ip.src window 1s where tcp }\n'
                 '        t3 { when b > 1000 { alert "b" limit 1000/s } } }')
    run(eng, [udp(), udp()])
    snap = eng.snapshot()
    assert stat(snap, "k", "b") == [] and snap["counters"]["rule.0.fired"] == 0


def test_event_fields_of_absent_layers_are_zero(engine):
    """send packet(...) sends a field whose layer is absent as 0. (The C once copied
    the shared storage: tcp.dport of a UDP packet was its UDP port.)"""
    eng = engine('app s { t1 { select ip } t3 { when pkt.len > 0 { send packet(tcp.dport, dns.id) to asl limit 1000/s } } }')
    run(eng, [udp(dport=6)])
    assert [e["fields"] for e in eng.snapshot()["events"]] == [{"dns.id": 0, "tcp.dport": 0}]
