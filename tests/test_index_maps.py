"""Keyed maps of small key domains are arrays indexed by the key (compiler/plan.py
key_index): `count() by dns.rcode` is a 16-entry array, not a 16,384-entry hash map.

The plan's choice, the field domains it relies on (checked on every frame of the
corpus), and the statistics of such maps on both engines, read by snapshots and by
T3 rules, with exact expected values.
"""

from __future__ import annotations

import pytest
from scapy.all import DNS, DNSQR, IP, TCP, UDP, Dot1Q

from compiler import abi
from compiler import plan as P
from compiler.driver import compile_files
from dsl.fields import FIELDS
from engine_helpers import S, Eth, run, stat
from runtime.engines.reference import decode
from spec_helpers import rule_fired
from test_differential import corpus


def plan_of(tmp_path, spec: str) -> P.Plan:
    path = tmp_path / "s.mon"
    path.write_text(spec)
    return compile_files([str(path)], replay=True).plan


def only_map(plan):
    (m,) = [m for m in plan.maps if m.kind == "fused" and m.key]
    return m


@pytest.mark.parametrize("by, size, index, entries", [
    ("dns.rcode", "", [("dns.rcode", 0, 4)], 16),
    ("ip.proto", "", [("ip.proto", 0, 8)], 256),
    ("tcp.syn", "", [("tcp.syn", 0, 1)], 2),
    # members largest first (compiler/layout.py), the first lowest in the index
    ("(dns.rcode, ip.proto)", "", [("dns.rcode", 0, 4), ("ip.proto", 4, 8)], 4096),
    ("vlan.id", "", [("vlan.id", 0, 12)], 4096),
    ("dns.rcode", "size 16", [("dns.rcode", 0, 4)], 16),
    # a hash map: more than INDEX_KEY_BITS_MAX bits, a size below the domain, wide fields
    ("(vlan.id, dns.rcode)", "", [], 16384),
    ("dns.rcode", "size 8", [], 8),
    ("tcp.dport", "", [], 16384),
    ("ip.dst", "", [], 16384),
    ("eth.src", "", [], 16384),
])
def test_the_plan_indexes_small_key_domains(tmp_path, by, size, index, entries):
    m = only_map(plan_of(tmp_path, f"app a {{ t1 {{ select ip }} t2 {{ s = count() by {by} {size} }} }}"))
    assert [(p.field, p.shift, p.bits) for p in m.index] == index
    # no rule reads the map: a value per CPU (tests/test_percpu.py)
    assert (m.bpf_type, m.entries) == (("percpu_array" if index else "percpu_hash"), entries)
    assert abi.INDEX_KEY_BITS_MAX == 12


def test_field_domains_hold_on_the_corpus():
    """Every value the decoder gives a field with a domain fits it, on every corpus frame
    (the parser masks those fields: the kernel's tests hold it to the decoder)."""
    files, _ = corpus()
    if not files:
        pytest.skip("corpus not found")
    narrow = {n: f.value_bits for n, f in FIELDS.items() if f.domain}
    assert sorted(narrow) == ["dns.opcode", "dns.rcode", "ip.version", "ipv4.frag_off", "ipv4.ihl",
                              "ipv6.flow", "vlan.depth", "vlan.id", "vlan.inner", "vlan.pcp"]
    seen = dict.fromkeys(narrow, 0)
    for _, frames in files:
        for _, frame in frames:
            fields = decode(frame).fields
            for name, bits in narrow.items():
                if name in fields:
                    assert 0 <= fields[name] < 1 << bits, (name, fields[name])
                    seen[name] += 1
    assert all(seen.values()), seen          # the corpus has frames with each of them


def dns_response(rcode: int, pad: int = 0, sport: int = 53) -> bytes:
    return bytes(Eth() / IP(src="198.18.0.53", dst="198.19.0.1") / UDP(sport=sport, dport=3333)
                 / DNS(id=1, qr=1, rcode=rcode, qd=DNSQR(qname="a.example")) / (b"x" * pad))


def test_counts_by_rcode_and_by_a_composite_index(engine):
    eng = engine("""
app d {
  t1 { select dns }
  t2 {
    rc = count() as n, sum(pkt.len) as bytes, max(udp.len) as big by dns.rcode
    pp = count() by (ip.proto, dns.opcode)
  }
}""")
    frames = [dns_response(0), dns_response(3), dns_response(3, pad=10), dns_response(15), dns_response(0, pad=4)]
    run(eng, frames)
    snap = eng.snapshot()
    n = [len(f) for f in frames]
    ulen = [len(f) - 14 - 20 for f in frames]
    assert stat(snap, "d", "rc") == [
        {"key": {"dns.rcode": 0}, "value": {"n": 2, "bytes": n[0] + n[4], "big": max(ulen[0], ulen[4])}},
        {"key": {"dns.rcode": 3}, "value": {"n": 2, "bytes": n[1] + n[2], "big": max(ulen[1], ulen[2])}},
        {"key": {"dns.rcode": 15}, "value": {"n": 1, "bytes": n[3], "big": ulen[3]}},
    ]
    assert stat(snap, "d", "pp") == [{"key": {"dns.opcode": 0, "ip.proto": 17}, "value": {"count": 5}}]
    assert all(snap["counters"][c] == 0 for c in snap["counters"] if c.endswith("insert_failed"))
    kinds = {tuple(m["key_fields"]): m["bpf_type"] for m in eng.manifest.raw["maps"] if m["key_fields"]}
    assert kinds == {("dns.rcode",): "percpu_array", ("dns.opcode", "ip.proto"): "percpu_array"}


def test_a_rule_reads_an_indexed_statistic(engine):
    """T3 finds the entry of the packet's key in the array: the rule fires from the
    third NXDOMAIN on (the third and the fourth), never for the other rcodes."""
    eng = engine("""
app nx {
  t1 { select dns and dns.qr }
  t2 { rc = count() by dns.rcode }
  t3 { when rc > 2 { alert "many of one rcode" } }
}""")
    run(eng, [dns_response(3), dns_response(0), dns_response(3), dns_response(0), dns_response(3),
              dns_response(3), dns_response(1)])
    snap = eng.snapshot()
    assert stat(snap, "nx", "rc") == [{"key": {"dns.rcode": r}, "value": {"count": n}} for r, n in ((0, 2), (1, 1), (3, 4))]
    assert rule_fired(snap["counters"]) == 2


def test_windowed_slots_of_an_indexed_map(engine):
    """Each entry keeps its own window and the last one, as a hash map's entry does."""
    eng = engine("app w { t1 { select tcp } t2 { f = count() by tcp.syn window 1s } }")

    def syn(flags):
        return bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1") / TCP(sport=1, dport=2, flags=flags))
    run(eng, [syn("S"), syn("S"), syn("A")], t0=S)
    run(eng, [syn("S")], t0=2 * S + 5)
    entries = stat(eng.snapshot(), "w", "f")
    assert entries == [{"key": {"tcp.syn": 0}, "value": {"count": 0}, "last_window": {"count": 1}},
                       {"key": {"tcp.syn": 1}, "value": {"count": 1}, "last_window": {"count": 2}}]


def test_vlan_pcp_index(engine):
    eng = engine("app v { t1 { select vlan } t2 { p = count() by vlan.pcp } }")
    frames = [bytes(Eth() / Dot1Q(prio=p, vlan=7) / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(sport=1, dport=2))
              for p in (7, 0, 7, 5)]
    run(eng, frames)
    assert stat(eng.snapshot(), "v", "p") == [{"key": {"vlan.pcp": p}, "value": {"count": n}} for p, n in ((0, 1), (5, 1), (7, 2))]
