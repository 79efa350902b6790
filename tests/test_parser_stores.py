"""The parser stores only the members of ``struct xm_pkt`` that the program reads, and
those it needs itself (compiler/c_fields.py parser_stores, codegen_templates/parse.c.j2
``store``): the rest are never written and stay zero.

Which members a program stores, from its fields; that the template's struct and the one
source of members agree; that a parser rendered alone stores every member; and, on both
engines, that a program reading fields of every layer still reads each exactly while
another reading none of them gets the same values for what it does read.
"""

from __future__ import annotations

import re

import pytest
from scapy.all import DNS, DNSQR, IP, TCP, UDP, Dot1Q, IPv6

from compiler import c_fields
from compiler.codegen import render_parser
from compiler.driver import compile_files
from dsl.fields import FIELDS
from engine_helpers import Eth, run, stat


def compiled(tmp_path, spec: str):
    path = tmp_path / "s.mon"
    path.write_text(spec)
    return compile_files([str(path)], replay=True)


def stored_in_c(c: str) -> set[str]:
    """The members the rendered parser writes (``p->member =`` or a memcpy into one)."""
    return set(re.findall(r"\bp->([a-z0-9_]+)(?:\.w\[[^]]+\])? = ", c)) | set(
        re.findall(r"__builtin_memcpy\(p->([a-z0-9_]+),", c))


def test_members_are_the_templates_struct():
    """PKT_MEMBERS is struct xm_pkt's members but `layers` and padding, in its order."""
    c = render_parser({"eth", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6", "dns"})
    body = c[c.index("struct xm_pkt {"):]
    body = body[:body.index("};")]
    members = re.findall(r"^\s+(?:union xm_addr|__u\d+)\s+([a-z0-9_]+)(?:\[\d+\])?;", body, re.M)
    assert tuple(m for m in members if m != "layers" and not m.startswith("_pad")) == c_fields.PKT_MEMBERS
    # every catalog field lives in members of that struct (or in `layers`)
    for name in FIELDS:
        assert c_fields.members_of(name) <= set(c_fields.PKT_MEMBERS), name


def test_a_parser_rendered_alone_stores_every_member():
    c = render_parser({"eth", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6", "dns"})
    assert stored_in_c(c) == set(c_fields.PKT_MEMBERS) | {"layers"}
    assert "Not stored" not in c
    assert c_fields.parser_stores(None) == c_fields.PKT_MEMBERS


@pytest.mark.parametrize("fields, extra", [
    ((), ()),
    (("tcp.seq",), ("tcp_seq",)),
    (("tcp.port",), ()),                                  # either direction: sport and dport, always stored
    (("ipv4.df", "ipv4.frag_off"), ("ipv4_frag",)),
    (("ip.ttl", "ipv6.hlim", "ipv4.ttl"), ("ip_ttl",)),   # one member for three fields
    (("dns.rcode", "dns.qr"), ("dns_flags",)),
    (("eth.src", "vlan.inner"), ("eth_src", "vlan_inner")),
])
def test_stores_of_fields(fields, extra):
    want = set(c_fields.PARSER_NEEDS) | set(extra)
    assert c_fields.parser_stores(fields) == tuple(m for m in c_fields.PKT_MEMBERS if m in want)


def test_a_program_stores_what_it_reads(tmp_path):
    art = compiled(tmp_path, """
app a {
  t1 { select tcp and tcp.syn }
  t2 { s = count() as n, max(ip.ttl) as ttl by (ip.src, tcp.dport) }
  t3 { when s.n > 3 { send packet(ip.src, tcp.seq) to asl } }
}""")
    want = set(c_fields.PARSER_NEEDS) | {"ip_ttl", "tcp_flags", "tcp_seq"}
    assert set(art.plan.stores) == want
    assert stored_in_c(art.c) == want | {"layers"}
    for unread in ("eth_src", "ipv4_id", "tcp_ackno", "tcp_window", "udp_len", "dns_id", "ip_tos"):
        assert f"p->{unread} = " not in art.c and f"memcpy(p->{unread}," not in art.c
    assert "Not stored, as nothing reads them" in art.c


FRAMES = [
    bytes(Eth() / Dot1Q(prio=5, vlan=7) / IP(src="198.18.0.1", dst="198.19.0.1", ttl=9, tos=4, id=77)
          / TCP(sport=1000, dport=80, flags="S", seq=1234, ack=99, window=512)),
    bytes(Eth() / IP(src="198.18.0.2", dst="198.19.0.1", ttl=64, flags="DF") / TCP(sport=1001, dport=80, flags="A",
                                                                                   seq=5, ack=6, window=7)),
    bytes(Eth() / IP(src="198.18.0.3", dst="198.19.0.53", ttl=3) / UDP(sport=4000, dport=53)
          / DNS(id=42, rd=1, qd=DNSQR(qname="a.example"))),
    bytes(Eth() / IPv6(src="2001:2::1", dst="2001:2::2", hlim=5, tc=8, fl=12345) / TCP(sport=9, dport=22, flags="S",
                                                                                      seq=77)),
]


def keys(snap, app, stat_name, *fields):
    return sorted(tuple(e["key"][f] for f in fields) + (e["value"]["count"],) for e in stat(snap, app, stat_name))


def test_every_layers_fields_read_exactly(engine):
    """A program reading fields of every member: each value as the frame has it."""
    eng = engine("""
app a {
  t1 { select ip }
  t2 {
    v4 = count() by (ip.src, ip.ttl, ipv4.id, ipv4.df, ipv4.tos)
    v6 = count() by (ip.src, ip.ttl, ipv6.flow, ipv6.tc)
    vl = count() by (vlan.pcp, vlan.id)
    tc = count() by (tcp.seq, tcp.ackno, tcp.window)
    dn = count() by (udp.len, dns.id, dns.qdcount)
  }
}""")
    run(eng, FRAMES)
    snap = eng.snapshot()
    assert keys(snap, "a", "v4", "ip.src", "ip.ttl", "ipv4.id", "ipv4.df", "ipv4.tos") == [
        ("198.18.0.1", 9, 77, 0, 4, 1), ("198.18.0.2", 64, 1, 1, 0, 1), ("198.18.0.3", 3, 1, 0, 0, 1)]
    assert keys(snap, "a", "v6", "ip.src", "ip.ttl", "ipv6.flow", "ipv6.tc") == [("2001:2::1", 5, 12345, 8, 1)]
    assert keys(snap, "a", "vl", "vlan.pcp", "vlan.id") == [(5, 7, 1)]
    assert keys(snap, "a", "tc", "tcp.seq", "tcp.ackno", "tcp.window") == [
        (5, 6, 7, 1), (77, 0, 8192, 1), (1234, 99, 512, 1)]
    assert keys(snap, "a", "dn", "udp.len", "dns.id", "dns.qdcount") == [(len(FRAMES[2]) - 14 - 20, 42, 1, 1)]


def test_a_program_reading_few_fields_reads_them_the_same(engine):
    """The same frames through a program that stores almost nothing: what it reads is the same."""
    eng = engine("app b { t1 { select l4 } t2 { f = count() as n, sum(pkt.len) as bytes by (ip.dst, l4.dport) } }")
    run(eng, FRAMES)
    got = sorted((e["key"]["ip.dst"], e["key"]["l4.dport"], e["value"]["n"], e["value"]["bytes"])
                 for e in stat(eng.snapshot(), "b", "f"))
    assert got == sorted([("198.19.0.1", 80, 2, len(FRAMES[0]) + len(FRAMES[1])),
                          ("198.19.0.53", 53, 1, len(FRAMES[2])), ("2001:2::2", 22, 1, len(FRAMES[3]))])
