"""The reference frame decoder, the parse outcomes and the C field mapping (no kernel).

Frames here are assembled byte by byte with struct (no scapy), and every expected
value is written out by hand: these tests pin the semantics that the kernel tests
(tests/test_parse_kernel.py) then hold the XDP parser to.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from compiler import abi, c_fields, codegen, parse_outcomes as po
from dsl.fields import FIELDS, LAYERS
from runtime.engines.reference import decode
from runtime.engines.reference.decoder import V4_MAPPED_PREFIX

ROOT = Path(__file__).resolve().parents[1]

DST = bytes.fromhex("020000000002")
SRC = bytes.fromhex("020000000001")
V4_SRC = bytes([198, 18, 0, 1])
V4_DST = bytes([198, 19, 255, 254])
V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8ffff00000000000000000002")


# ---- frame builders ----------------------------------------------------------------

def eth(etype: int, dst=DST, src=SRC) -> bytes:
    return dst + src + struct.pack("!H", etype)


def vlan(tci: int, etype: int) -> bytes:
    return struct.pack("!HH", tci, etype)


def ipv4(proto: int, payload_len: int, *, ihl=5, tos=0, ident=0x1234, flags_frag=0x4000, ttl=64,
         src=V4_SRC, dst=V4_DST, version=4) -> bytes:
    opts = b"\x01" * (ihl * 4 - 20) if ihl > 5 else b""
    tot = ihl * 4 + payload_len
    return struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, tos, tot, ident, flags_frag, ttl, proto, 0,
                       src, dst) + opts


def ipv6(nh: int, plen: int, *, tc=0, flow=0, hlim=64, src=V6_SRC, dst=V6_DST) -> bytes:
    vtcf = (6 << 28) | (tc << 20) | flow
    return struct.pack("!IHBB16s16s", vtcf, plen, nh, hlim, src, dst)


def ext(nh: int, length: int = 0) -> bytes:
    """A hop-by-hop/routing/destination-options header of (length + 1) * 8 bytes."""
    return bytes([nh, length]) + b"\x01\x04\x00\x00\x00\x00" + b"\x00" * (8 * length)


def frag6(nh: int, offset: int, m: int, ident=0xABCD) -> bytes:
    return struct.pack("!BBHI", nh, 0, (offset << 3) | m, ident)


def tcp(sport, dport, *, seq=0, ack=0, doff=5, flags=0x02, window=65535) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0) + b"\x01" * (
        max(doff, 5) * 4 - 20)


def udp(sport, dport, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def dns_hdr(ident, flags, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


def fields_of(layers: set[str]) -> set[str]:
    return {n for n, f in FIELDS.items() if f.layer in layers}


# ---- frames with exact expected values ------------------------------------------------

def test_ipv4_tcp_syn_every_field():
    t = tcp(40000, 443, seq=0xDEADBEEF, ack=0, flags=0x02, window=64240)
    frame = eth(0x0800) + ipv4(6, len(t), tos=0xB8, ident=4242, ttl=61) + t
    d = decode(frame, ts=123456789)
    assert d.outcome == "ok" and d.outcome_index == 0
    assert d.layers == {"pkt", "eth", "ipv4", "ip", "tcp", "l4"}
    assert d.fields == {
        "pkt.len": 54, "pkt.ts": 123456789,
        "eth.src": SRC, "eth.dst": DST, "eth.type": 0x0800,
        "ipv4.src": V4_SRC, "ipv4.dst": V4_DST, "ipv4.proto": 6, "ipv4.ttl": 61, "ipv4.tos": 0xB8,
        "ipv4.len": 40, "ipv4.id": 4242, "ipv4.ihl": 5, "ipv4.df": 1, "ipv4.mf": 0, "ipv4.frag_off": 0,
        "ip.src": V4_MAPPED_PREFIX + V4_SRC, "ip.dst": V4_MAPPED_PREFIX + V4_DST,
        "ip.proto": 6, "ip.ttl": 61, "ip.version": 4, "ip.frag": 0,
        "tcp.sport": 40000, "tcp.dport": 443, "tcp.port": (40000, 443), "tcp.seq": 0xDEADBEEF,
        "tcp.ackno": 0, "tcp.window": 64240, "tcp.flags": 0x02,
        "tcp.fin": 0, "tcp.syn": 1, "tcp.rst": 0, "tcp.psh": 0, "tcp.ack": 0, "tcp.urg": 0,
        "tcp.ece": 0, "tcp.cwr": 0,
        "l4.sport": 40000, "l4.dport": 443, "l4.port": (40000, 443),
    }
    assert d.fields["ip.src"] == bytes.fromhex("00000000000000000000ffffc6120001")


def test_tcp_flag_bits():
    for bit, name in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")):
        t = tcp(1, 2, flags=1 << bit)
        d = decode(eth(0x0800) + ipv4(6, len(t)) + t)
        assert d[f"tcp.{name}"] == 1
        assert d["tcp.flags"] == 1 << bit
        assert sum(d[f"tcp.{n}"] for n in ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")) == 1


def test_qinq_ipv6_exthdrs_first_fragment_dns_response():
    dns = dns_hdr(0xBEEF, 0x8583, qd=1, an=2, ns=3, ar=4)  # QR AA RD RA, rcode 3
    u = udp(53, 33333, dns)
    body = ext(44) + frag6(17, 0, 1) + u
    frame = (eth(0x88A8) + vlan((5 << 13) | 100, 0x8100) + vlan((1 << 13) | 200, 0x86DD)
             + ipv6(0, len(body), tc=0x2E, flow=0xABCDE, hlim=250) + body)
    d = decode(frame)
    assert d.outcome == "ok"
    assert d.layers == {"pkt", "eth", "vlan", "ipv6", "ip", "udp", "l4", "dns"}
    f = d.fields
    assert (f["eth.type"], f["vlan.id"], f["vlan.pcp"], f["vlan.inner"], f["vlan.depth"]) == (0x86DD, 100, 5, 200, 2)
    assert (f["ipv6.tc"], f["ipv6.flow"], f["ipv6.hlim"], f["ipv6.plen"]) == (0x2E, 0xABCDE, 250, len(body))
    assert f["ipv6.src"] == f["ip.src"] == V6_SRC and f["ipv6.dst"] == f["ip.dst"] == V6_DST
    assert f["ipv6.nexthdr"] == f["ip.proto"] == 17
    assert (f["ip.version"], f["ip.ttl"], f["ip.frag"]) == (6, 250, 1)
    assert (f["udp.sport"], f["udp.dport"], f["udp.len"], f["udp.port"]) == (53, 33333, 20, (53, 33333))
    assert {k: f[k] for k in f if k.startswith("dns.")} == {
        "dns.id": 0xBEEF, "dns.qr": 1, "dns.opcode": 0, "dns.aa": 1, "dns.tc": 0, "dns.rd": 1,
        "dns.ra": 1, "dns.rcode": 3, "dns.qdcount": 1, "dns.ancount": 2, "dns.nscount": 3, "dns.arcount": 4,
    }
    assert set(f) == fields_of(d.layers)


def test_dns_opcode_and_tc():
    u = udp(1000, 53, dns_hdr(7, (2 << 11) | 0x0200))  # opcode 2 (status), TC
    d = decode(eth(0x0800) + ipv4(17, len(u)) + u)
    assert (d["dns.opcode"], d["dns.tc"], d["dns.qr"], d["dns.rcode"]) == (2, 1, 0, 0)


def test_arp_is_non_ip_with_eth_fields():
    frame = eth(0x0806, dst=b"\xff" * 6) + b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20
    d = decode(frame)
    assert d.outcome == "non_ip"
    assert d.layers == {"pkt", "eth"}
    assert d.fields == {"pkt.len": 42, "pkt.ts": 0, "eth.src": SRC, "eth.dst": b"\xff" * 6, "eth.type": 0x0806}


def test_ipv4_non_first_fragment_has_no_l4():
    frame = eth(0x0800) + ipv4(6, 40, flags_frag=0x2000 | 185) + b"\x00" * 40
    d = decode(frame)
    assert d.outcome == "fragment"
    assert d.layers == {"pkt", "eth", "ipv4", "ip"}
    assert (d["ip.frag"], d["ipv4.mf"], d["ipv4.df"], d["ipv4.frag_off"], d["ip.proto"]) == (1, 1, 0, 185, 6)
    assert "tcp.sport" not in d and "l4.port" not in d


def test_ipv4_first_fragment_parses_l4():
    u = udp(5000, 6000, b"x" * 30)
    d = decode(eth(0x0800) + ipv4(17, len(u), flags_frag=0x2000) + u)
    assert d.outcome == "ok" and d["ip.frag"] == 1 and d["udp.dport"] == 6000


def test_ipv6_non_first_fragment():
    body = ext(44) + frag6(6, 100, 0) + b"\x00" * 24
    d = decode(eth(0x86DD) + ipv6(0, len(body)) + body)
    assert d.outcome == "fragment" and d["ip.frag"] == 1 and d["ip.proto"] == 6
    assert "tcp" not in d.layers


def test_ipv6_atomic_fragment_is_not_a_fragment():
    t = tcp(1, 2)
    body = frag6(6, 0, 0) + t
    d = decode(eth(0x86DD) + ipv6(44, len(body)) + body)
    assert d.outcome == "ok" and d["ip.frag"] == 0 and d["tcp.dport"] == 2


def test_ipv6_ah_length_rule():
    t = tcp(5, 6)
    ah = bytes([6, 4]) + b"\x00\x00" + struct.pack("!II", 1, 1) + b"\x00" * 12  # (4 + 2) * 4 = 24 bytes
    d = decode(eth(0x86DD) + ipv6(51, len(ah) + len(t)) + ah + t)
    assert d.outcome == "ok" and d["tcp.sport"] == 5


def test_ipv6_extension_header_bound():
    t = tcp(1, 2)
    body = b"".join(ext(60) for _ in range(5)) + ext(6) + t      # six headers
    frame = eth(0x86DD) + ipv6(60, len(body)) + body
    assert decode(frame).outcome == "ok"
    d = decode(frame, ipv6_ext_max=5)
    assert d.outcome == "ipv6_ext_limit"
    assert d.layers == {"pkt", "eth", "ipv6", "ip"} and d["ip.proto"] == 60


def test_ipv6_extension_header_truncated():
    body = ext(17, length=3)                                      # 32 bytes
    frame = eth(0x86DD) + ipv6(0, 32) + body
    assert decode(frame).outcome == "truncated_udp"
    d = decode(frame[:-1])
    assert d.outcome == "truncated_ipv6_ext"
    assert "ipv6" in d.layers and d["ip.proto"] == 0


def test_three_vlan_tags():
    frame = eth(0x8100) + vlan(1, 0x8100) + vlan(2, 0x88A8) + vlan(3, 0x0800) + ipv4(6, 20) + tcp(1, 2)
    d = decode(frame)
    assert d.outcome == "vlan_too_deep"
    assert (d["vlan.depth"], d["vlan.id"], d["vlan.inner"], d["eth.type"]) == (2, 1, 2, 0x88A8)
    assert "ip" not in d.layers


def test_truncations():
    t = tcp(1, 2)
    frame = eth(0x8100) + vlan(9, 0x0800) + ipv4(6, len(t)) + t
    assert decode(frame).outcome == "ok"
    assert decode(frame[:13]).outcome == "truncated_eth"
    assert decode(frame[:13]).fields == {"pkt.len": 13, "pkt.ts": 0}
    d = decode(frame[:17])
    assert d.outcome == "truncated_vlan" and d.layers == {"pkt", "eth"} and d["eth.type"] == 0x8100
    assert decode(frame[:18 + 19]).outcome == "truncated_ipv4"
    assert decode(frame[:18 + 20 + 19]).outcome == "truncated_tcp"
    assert decode(frame[:18 + 20 + 20]).outcome == "ok"


def test_bad_headers():
    assert decode(eth(0x0800) + ipv4(6, 20, ihl=4)[:20] + tcp(1, 2)).outcome == "bad_ipv4_header"
    assert decode(eth(0x0800) + ipv4(6, 20, version=6) + tcp(1, 2)).outcome == "bad_ipv4_header"
    assert decode(eth(0x86DD) + b"\x45" + ipv6(17, 8)[1:] + udp(1, 2)).outcome == "bad_ipv6_header"
    d = decode(eth(0x0800) + ipv4(6, 20) + tcp(1, 2, doff=4))
    assert d.outcome == "bad_tcp_header" and "tcp" not in d.layers and "ip" in d.layers
    # Options announced by the data offset must be there too.
    assert decode(eth(0x0800) + ipv4(6, 20) + tcp(1, 2, doff=8)[:30]).outcome == "truncated_tcp"


def test_ipv4_options_skipped_by_ihl():
    t = tcp(22, 5555)
    d = decode(eth(0x0800) + ipv4(6, len(t), ihl=7) + t)
    assert d.outcome == "ok" and d["ipv4.ihl"] == 7 and d["tcp.sport"] == 22


def test_icmp_and_icmp6():
    icmp = bytes([8, 0, 0, 0, 0, 1, 0, 2])
    d = decode(eth(0x0800) + ipv4(1, 8) + icmp)
    assert d.outcome == "ok" and (d["icmp.type"], d["icmp.code"]) == (8, 0) and "icmp6" not in d.layers
    d = decode(eth(0x86DD) + ipv6(58, 8) + bytes([1, 4, 0, 0, 0, 0, 0, 0]))
    assert d.outcome == "ok" and (d["icmp6.type"], d["icmp6.code"]) == (1, 4) and "icmp" not in d.layers
    assert decode(eth(0x86DD) + ipv6(1, 8) + icmp).outcome == "other_l4"        # ICMP only over IPv4
    assert decode(eth(0x0800) + ipv4(58, 8) + icmp).outcome == "other_l4"       # ICMPv6 only over IPv6
    assert decode(eth(0x0800) + ipv4(1, 4) + icmp[:4]).outcome == "truncated_icmp"
    assert decode(eth(0x86DD) + ipv6(58, 4) + icmp[:7]).outcome == "truncated_icmp6"


def test_udp_53_needs_dns_header():
    u = udp(53, 999, b"\x00" * 11)
    d = decode(eth(0x0800) + ipv4(17, len(u)) + u)
    assert d.outcome == "truncated_dns" and "udp" in d.layers and "dns" not in d.layers


def test_other_l4_and_padding():
    d = decode(eth(0x0800) + ipv4(47, 4) + b"\x00\x00\x08\x00")           # GRE
    assert d.outcome == "other_l4" and d["ip.proto"] == 47
    # Header lengths are reported, not trusted: Ethernet padding is parsed as TCP.
    d = decode(eth(0x0800) + ipv4(6, 0) + b"\x00" * 26)
    assert d.outcome == "bad_tcp_header" and d["ipv4.len"] == 20


def test_linear_limit():
    u = udp(1, 2, b"\x00" * 100)
    frame = eth(0x0800) + ipv4(17, len(u)) + u
    assert decode(frame, linear=42).outcome == "ok"
    d = decode(frame, linear=41)
    assert d.outcome == "truncated_udp" and d["pkt.len"] == len(frame)


# ---- layer requests --------------------------------------------------------------------

def test_l4_not_requested():
    t = tcp(1, 2)
    syn = eth(0x0800) + ipv4(6, len(t)) + t
    layers = {"eth", "ip", "ipv4", "ipv6"}
    d = decode(syn, layers)
    assert d.outcome == "ok" and d.layers == {"pkt", "eth", "ipv4", "ip"}
    assert decode(syn[:-1], layers).outcome == "ok"                                 # TCP not looked at
    assert decode(eth(0x0800) + ipv4(6, 40, flags_frag=185) + b"\x00" * 40, layers).outcome == "ok"
    assert decode(eth(0x0800) + ipv4(47, 4) + b"\x00" * 4, layers).outcome == "ok"
    assert decode(eth(0x0806) + b"\x00" * 28, layers).outcome == "non_ip"


def test_only_ethernet_requested():
    t = tcp(1, 2)
    d = decode(eth(0x8100) + vlan(3, 0x0800) + ipv4(6, len(t)) + t, {"eth", "pkt"})
    assert d.outcome == "ok" and d.layers == {"pkt", "eth", "vlan"} and d["eth.type"] == 0x0800
    assert decode(eth(0x0806), {"eth"}).outcome == "ok"


def test_known_protocol_not_requested_is_ok():
    u = udp(1, 2)
    d = decode(eth(0x0800) + ipv4(17, len(u)) + u, {"tcp", "ipv4"})   # unclosed: TCP only, IPv4 only
    assert d.outcome == "ok" and "udp" not in d.layers
    assert decode(eth(0x86DD) + ipv6(17, 8) + u, {"tcp", "ipv4"}).outcome == "ok"


def test_every_decoded_frame_has_exactly_its_layers_fields():
    t = tcp(1, 2)
    frames = [eth(0x0800) + ipv4(6, len(t)) + t, eth(0x0806), b"\x00" * 5,
              eth(0x86DD) + ipv6(58, 8) + b"\x80" + b"\x00" * 7]
    for fr in frames:
        for n in range(len(fr) + 1):
            d = decode(fr[:n])
            assert set(d.fields) == fields_of(d.layers)
            assert "pkt" in d.layers and d.outcome in po.NAMES


# ---- parse outcomes --------------------------------------------------------------------

def test_outcome_table():
    assert po.NAMES[0] == "ok" and po.OK == 0
    assert [o.index for o in po.OUTCOMES] == list(range(po.COUNT))
    assert len(set(po.NAMES)) == po.COUNT
    for required in ("truncated_eth", "truncated_vlan", "vlan_too_deep", "non_ip", "truncated_ipv4",
                     "bad_ipv4_header", "truncated_ipv6", "truncated_ipv6_ext", "ipv6_ext_limit", "fragment",
                     "truncated_tcp", "bad_tcp_header", "truncated_udp", "truncated_icmp", "truncated_icmp6",
                     "truncated_dns", "other_l4"):
        assert required in po.BY_NAME
    assert all(o.doc and "\n" not in o.doc for o in po.OUTCOMES)
    assert po.BY_NAME["truncated_tcp"].c_name == "XM_OUT_TRUNCATED_TCP"
    assert ("XM_OUT_OK", 0) in abi.outcome_defines() and ("XM_OUT_COUNT", po.COUNT) in abi.outcome_defines()


def test_decoders_and_possible_outcomes():
    # the one layer closure: what a request of layers decodes
    assert po.decoders_for({"tcp"}) == {"eth", "ipv4", "ipv6", "tcp"}
    assert po.decoders_for({"l4"}) == {"eth", "ipv4", "ipv6", "tcp", "udp"}
    assert po.decoders_for({"eth"}) == {"eth"}
    assert po.decoders_for({"vlan", "pkt"}) == {"eth"}
    assert po.decoders_for({"dns"}) == {"eth", "ipv4", "ipv6", "udp", "dns"}
    assert po.decoders_for({"icmp"}) == {"eth", "ipv4", "icmp"}
    assert po.decoders_for({"icmp6"}) == {"eth", "ipv6", "icmp6"}
    assert set(po.DECODES) == set(LAYERS)
    names = {o.name for o in po.possible_outcomes({"eth", "ip", "ipv4", "ipv6"})}
    assert "non_ip" in names and "truncated_ipv6_ext" in names
    assert not names & {"fragment", "other_l4", "truncated_tcp", "truncated_udp", "truncated_dns"}
    assert {o.name for o in po.possible_outcomes({"eth"})} == {"ok", "truncated_eth", "truncated_vlan", "vlan_too_deep"}
    assert {o.name for o in po.possible_outcomes(set(LAYERS))} == set(po.NAMES)
    with pytest.raises(ValueError):
        po.decoders_for({"tcp", "sctp"})


# ---- C field mapping -------------------------------------------------------------------

def test_c_fields_cover_the_catalog_exactly():
    assert c_fields.check_against_catalog() == []
    assert set(c_fields.C_FIELDS) == set(FIELDS)
    for name, f in FIELDS.items():
        cf = c_fields.C_FIELDS[name]
        assert cf.layer == f.layer and cf.layer_bit == "XM_L_" + f.layer.upper()
        if f.either:
            assert cf.expr is None and cf.either == f.either
            assert all(c_fields.C_FIELDS[h].expr for h in cf.either)
        else:
            assert cf.expr and cf.expr.startswith(("p->", "(")) and cf.ctype


def test_layer_bits_follow_the_catalog_order():
    assert list(c_fields.LAYER_BITS) == list(LAYERS)
    assert [c_fields.LAYER_BITS[layer] for layer in LAYERS] == [1 << i for i in range(len(LAYERS))]
    assert c_fields.present_test("udp.port") == "(p->layers & XM_L_UDP)"
    assert c_fields.expr("tcp.syn", "pkt") == "((pkt->tcp_flags >> 1) & 1)"
    assert c_fields.C_FIELDS["ip.src"].nbytes == 16 and c_fields.C_FIELDS["ipv4.src"].nbytes == 4
    assert c_fields.C_FIELDS["udp.port"].nbytes == 2


def render_parser(layers, ipv6_ext_max=6) -> str:
    return codegen.render_parser(po.decoders_for(layers), ipv6_ext_max)


def test_template_constants_match_python():
    """The macros parse.c.j2 prints are those of parse_outcomes, c_fields and abi."""
    src = render_parser(LAYERS)
    outs = dict(re.findall(r"#define (XM_OUT_\w+)\s+(\d+)", src))
    assert outs == {**{o.c_name: str(o.index) for o in po.OUTCOMES}, "XM_OUT_COUNT": str(po.COUNT)}
    bits = dict(re.findall(r"#define (XM_L_\w+)\s+\(1u << (\d+)\)", src))
    assert bits == {c_fields.LAYER_MACROS[layer]: str(b.bit_length() - 1) for layer, b in c_fields.LAYER_BITS.items()}
    assert "#define XM_IPV6_EXT_MAX 6" in src
    assert "#define XM_IPV6_EXT_MAX 3" in render_parser(LAYERS, 3)


def test_template_renders_only_requested_decoders():
    full = render_parser(LAYERS)
    for fn in ("xm_parse_ipv4", "xm_parse_ipv6", "xm_parse_tcp", "xm_parse_udp", "xm_parse_dns",
               "xm_parse_icmp", "xm_parse_l4"):
        assert f"static __always_inline int {fn}(" in full
    ip_only = render_parser({"eth", "ip", "ipv4", "ipv6"})
    assert "xm_parse_ipv6(" in ip_only and "xm_parse_tcp(" not in ip_only and "xm_parse_l4(" not in ip_only
    eth_only = render_parser({"eth", "pkt"})
    assert "xm_parse_ipv4(" not in eth_only and "XM_OUT_NON_IP;" not in eth_only
    tcp = render_parser({"tcp"})
    assert "xm_parse_tcp(" in tcp and "xm_parse_udp(" not in tcp and "xm_parse_dns(" not in tcp
    l4 = render_parser({"l4"})
    assert "xm_parse_tcp(" in l4 and "xm_parse_udp(" in l4 and "xm_parse_dns(" not in l4
    assert "xm_parse_icmp(" not in tcp
    # Every layer request renders.
    for layer in LAYERS:
        assert "xm_parse(" in render_parser({layer})


def test_c_field_expressions_name_real_struct_members():
    src = render_parser(LAYERS)
    body = src[src.index("struct xm_pkt {"):]
    body = body[:body.index("};")]
    members = set(re.findall(r"^\s+(?:union xm_addr|__u\d+|__be\d+)\s+(\w+)", body, re.M))
    assert {"layers", "ts", "len", "src", "dst", "sport", "dport"} <= members
    for cf in c_fields.C_FIELDS.values():
        if cf.expr:
            for m in re.findall(r"p->(\w+)", cf.expr):
                assert m in members, (cf.name, m)
