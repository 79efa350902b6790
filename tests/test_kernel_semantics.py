"""What generated programs compute, run for real in the kernel.

Each test compiles a small spec (replay build), runs crafted frames through
BPF_PROG_TEST_RUN on a chosen clock and checks the decoded maps exactly.
"""

from __future__ import annotations

import pytest
from scapy.all import DNS, DNSQR, Dot1Q, Ether, ICMP, IP, IPv6, TCP, UDP

from compiler.driver import compile_files
from runtime.abi import hll
from runtime.engines.kernel import KernelEngine

pytestmark = pytest.mark.kernel

S = 1_000_000_000


@pytest.fixture
def engine(tmp_path):
    engines = []

    def make(spec: str):
        path = tmp_path / f"spec{len(engines)}.mon"
        path.write_text(spec)
        art = compile_files([str(path)], replay=True)
        eng = KernelEngine(art)
        engines.append(eng)
        return eng

    yield make
    for e in engines:
        e.close()


def tcp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=80, flags="S", pad=0):
    return bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / (b"x" * pad))


def udp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=53, pad=0):
    return bytes(Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"x" * pad))


def run(eng, frames, t0=S, step=1000):
    for i, f in enumerate(frames):
        eng.run_frame(t0 + i * step, f)


def stat(snap, app, name):
    return snap["apps"][app]["stats"][name]


def test_count_and_sum_by_key(engine):
    eng = engine("app acc { t1 { select ip } t2 { d = count() as n, sum(pkt.len) as bytes by ip.dst } }")
    frames = [tcp(dst="198.19.0.1")] * 3 + [udp(dst="198.19.0.2", pad=10)] * 2 + [bytes(Ether(type=0x0806) / (b"\0" * 28))]
    run(eng, frames)
    snap = eng.snapshot()
    assert stat(snap, "acc", "d") == [
        {"key": {"ip.dst": "198.19.0.1"}, "value": {"n": 3, "bytes": 3 * 54}},
        {"key": {"ip.dst": "198.19.0.2"}, "value": {"n": 2, "bytes": 2 * 52}},
    ]
    c = snap["counters"]
    assert (c["frames"], c["parse.ok"], c["parse.non_ip"], c["verdict.pass"]) == (6, 5, 1, 6)


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
    run(eng, [tcp()] * 2, t0=6 * S + 100)           # the next window
    assert stat(eng.snapshot(), "w", "c") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 2}}]
    assert stat(eng.snapshot(now=8 * S), "w", "c") == []   # that window has passed


def test_min_max_hist(engine):
    eng = engine("app s { t2 { z = min(pkt.len) as lo, max(pkt.len) as hi, hist(pkt.len) by ip.proto } }")
    run(eng, [tcp(pad=0), tcp(pad=100), udp(pad=1000)])
    snap = eng.snapshot()
    assert stat(snap, "s", "z") == [
        {"key": {"ip.proto": 6}, "value": {"lo": 54, "hi": 154, "hist_pkt_len": {"32-63": 1, "128-255": 1}}},
        {"key": {"ip.proto": 17}, "value": {"lo": 1042, "hi": 1042, "hist_pkt_len": {"1024-2047": 1}}},
    ]


def test_distinct_matches_python_mirror(engine):
    eng = engine("""app u { t2 { flows = distinct(ip.src, l4.sport)
                               per = distinct(l4.sport) by ip.src } }""")
    frames = [tcp(src=f"198.18.{i // 250}.{i % 250}", sport=1000 + i) for i in range(300)]
    run(eng, frames)
    snap = eng.snapshot()
    flows = stat(snap, "u", "flows")["value"]["distinct"]
    assert abs(flows - 300) <= 300 * 0.05
    # each source sent one port: the keyed sketch says 1 for each of them
    per = stat(snap, "u", "per")
    assert len(per) == 300 and {e["value"]["distinct"] for e in per} == {1}
    # the kernel's registers give exactly the estimate the Python mirror computes
    m = next(m for m in eng.manifest.raw["maps"] if m["kind"] == "hll")
    slot = m["slots"][0]
    raw = eng.maps.raw_state()
    regs = [int.from_bytes(v[:8], "little") & 0xFF for v in raw.maps[m["name"]]]
    z = sum(hll.hll_pow(r, eng.manifest.constants.hll_scale_bits) for r in regs)
    zeros = regs.count(0)
    assert flows == hll.estimate(z, zeros, 4096, slot["hll"]["am2"], slot["hll"]["log2m_fp"])


def test_track_open_close_expire(engine):
    eng = engine("""app h { t1 { select tcp }
      t2 { pending = track (ip.src, ip.dst, tcp.sport, tcp.dport)
                     open when tcp.syn and not tcp.ack close when tcp.ack and not tcp.syn expire 8s } }""")
    run(eng, [tcp(sport=1), tcp(sport=2), tcp(sport=3), tcp(sport=2, flags="A"), tcp(sport=1, flags="SA")], t0=100 * S)
    snap = eng.snapshot()
    pending = stat(snap, "h", "pending")
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
    # the count includes the packet itself: the 3rd packet (dport 82) is the first over 2
    assert [e["fields"] for e in packets] == [{"ip.src": "198.18.0.1", "tcp.dport": 82},
                                              {"ip.src": "198.18.0.1", "tcp.dport": 83}]
    assert [e["message"] for e in alerts] == ["too many"]
    c = snap["counters"]
    assert c["rule.0.fired"] == 5
    assert c["app.r.events"] == 3 and c["app.r.rate_limited"] == (5 - 2) + (5 - 1)
    # a second later the limiter lets events through again
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
    run(eng, [tcp()] * 2, t0=10 * S)              # od disabled: not counted
    snap = eng.snapshot()
    assert snap["apps"]["od"]["enabled"] is False and stat(snap, "od", "seen") == []
    run(eng, [tcp()] * 4, t0=11 * S)    # the 3rd packet of this window enables od for the 4th
    snap = eng.snapshot()
    assert snap["apps"]["od"]["enabled"] is True
    assert stat(snap, "od", "seen") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 1}}]
    assert [e["enabled"] for e in snap["events"] if e["type"] == "enable"] == ["od"]
    # 2 s after the last trigger it is off again and stops counting (one packet in
    # the 14 s window does not trigger it again)
    run(eng, [tcp()], t0=14 * S)
    snap = eng.snapshot()
    assert snap["apps"]["od"]["enabled"] is False
    assert stat(snap, "od", "seen") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 1}}]


def test_full_map_is_counted_and_lru_evicts(engine):
    eng = engine("""app f { t2 { a = count() by ip.src size 4
                                 b = count() by ip.dst size 4 on full lru } }""")
    run(eng, [tcp(src=f"198.18.0.{i}", dst=f"198.19.0.{i}") for i in range(10)])
    snap = eng.snapshot()
    assert len(stat(snap, "f", "a")) == 4
    assert snap["counters"]["map.m0.insert_failed"] == 6
    b = stat(snap, "f", "b")
    assert 1 <= len(b) <= 4 and snap["counters"]["map.m1.insert_failed"] == 0


def test_addresses_prefixes_vlan_ipv6(engine):
    eng = engine("""app p {
      t1 { select ip.src in {198.18.0.0/24, 2001:db8::/32} and not ip.dst == 198.19.0.9 }
      t2 { by_vlan = count() by vlan.id
           v6 = count() where ipv6 } }""")
    frames = [
        bytes(Ether() / Dot1Q(vlan=100) / IP(src="198.18.0.5", dst="198.19.0.1") / TCP()),
        bytes(Ether() / Dot1Q(vlan=100) / IP(src="198.18.1.5", dst="198.19.0.1") / TCP()),     # outside /24
        bytes(Ether() / Dot1Q(vlan=200) / IP(src="198.18.0.5", dst="198.19.0.9") / TCP()),     # excluded dst
        bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP()),
        bytes(Ether() / IPv6(src="2001:db9::1", dst="2001:db8::2") / UDP()),                  # outside /32
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
    query = bytes(Ether() / IP(src="198.18.0.1", dst="198.19.0.53") / UDP(sport=999, dport=53) / DNS(rd=1, qd=DNSQR(qname="a.example")))
    resp = bytes(Ether() / IP(src="198.19.0.53", dst="198.18.0.1") / UDP(sport=53, dport=999) / DNS(qr=1, qd=DNSQR(qname="a.example")) / (b"y" * 200))
    run(eng, [query, resp])            # 1 response, ratio 269/71 < ... fires only when r > 3 q
    fired = eng.snapshot()["counters"]["rule.0.fired"]
    assert fired == (1 if len(resp) > 3 * len(query) else 0)
    run(eng, [resp] * 2, t0=2 * S)
    assert eng.snapshot()["counters"]["rule.0.fired"] == fired + 2


def test_window_boundary_is_exact(engine):
    eng = engine("app w { t2 { c = count() window 100ms } }")
    w = 100_000_000
    eng.run_frame(7 * w - 1, tcp())                  # last nanosecond of window 6
    eng.run_frame(7 * w - 1, tcp())
    assert stat(eng.snapshot(now=7 * w - 1), "w", "c") == {"value": {"count": 2}}
    eng.run_frame(7 * w, tcp())                      # first nanosecond of window 7
    assert stat(eng.snapshot(now=7 * w), "w", "c") == {"value": {"count": 1}}
    assert stat(eng.snapshot(now=8 * w), "w", "c") == {"value": {"count": 0}}


def test_track_expiry_is_exact_to_the_bucket(engine):
    # expire 8s: buckets of 1 s; an entry opened in bucket b is open while now's
    # bucket is below b + 8
    eng = engine("""app h { t2 { p = track (ip.src, tcp.sport) open when tcp.syn close when tcp.fin expire 8s } }""")
    eng.run_frame(100 * S + 500_000_000, tcp(sport=1))                   # bucket 100
    assert stat(eng.snapshot(now=108 * S - 1), "h", "p")["size"] == 1   # bucket 107
    assert stat(eng.snapshot(now=108 * S), "h", "p")["size"] == 0       # bucket 108
    # a SYN for the expired entry opens it again, counted once
    eng.run_frame(108 * S, tcp(sport=1))
    snap = eng.snapshot(now=108 * S)
    assert stat(snap, "h", "p")["size"] == 1 and len(stat(snap, "h", "p")["open"]) == 1
    # closing an expired entry does not make the count negative
    eng.run_frame(120 * S, tcp(sport=1, flags="F"))
    assert stat(eng.snapshot(now=120 * S), "h", "p")["size"] == 0


def test_rate_limit_is_exact_to_the_nanosecond(engine):
    # limit 4/s: interval 250 ms, burst of 4
    eng = engine('app r { t3 { when tcp { alert "x" limit 4/s } } }')
    t = 10 * S
    for i in range(6):                                # 4 pass, 2 are limited
        eng.run_frame(t, tcp())
    assert eng.snapshot()["counters"]["app.r.events"] == 4
    eng.run_frame(t + 250_000_000 - 1, tcp())         # 1 ns before a token is back
    assert eng.snapshot()["counters"]["app.r.events"] == 4
    eng.run_frame(t + 250_000_000, tcp())             # exactly one interval later
    assert eng.snapshot()["counters"]["app.r.events"] == 5
    assert eng.snapshot()["counters"]["app.r.rate_limited"] == 3
