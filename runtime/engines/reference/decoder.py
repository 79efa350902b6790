"""Pure-Python frame decoder with exactly the semantics of the XDP parser.

This is the reference for codegen_templates/parse.c.j2 (``xm_parse``): same outcome,
same layers present, same field values, same bounds, for the same layer request. The
kernel tests (tests/test_parse_kernel.py) run both on every corpus frame and require
exact equality, so a change to one must be made to the other.

Rules, in the order the parser applies them (``end`` is the number of bytes the parser
can read: the whole frame, or only its first ``linear`` bytes for a multi-buffer frame):

* Ethernet: 14 bytes or ``truncated_eth``. ``eth.type`` starts as the outer EtherType.
* VLAN: while eth.type is 0x8100 or 0x88a8, up to two tags: each needs 4 bytes
  (``truncated_vlan``); the first gives vlan.id/vlan.pcp, the second vlan.inner; after
  each, eth.type becomes the tag's encapsulated type and vlan.depth counts the tags.
  A third tag is not parsed: ``vlan_too_deep`` (eth.type stays its TPID).
  The tag walk is always done (eth.type needs it), whatever was requested.
* No IP decoder requested: ``ok``. EtherType IPv4/IPv6 whose family was not requested:
  ``ok``. Any other EtherType: ``non_ip``.
* IPv4: 20 bytes (``truncated_ipv4``), version 4 and IHL >= 5 (``bad_ipv4_header``),
  IHL*4 bytes (``truncated_ipv4``). ip.frag = MF or offset != 0.
* IPv6: 40 bytes (``truncated_ipv6``), version 6 (``bad_ipv6_header``). The ipv6/ip
  layers are present from here on. Then at most ``ipv6_ext_max`` extension headers
  (0 hop-by-hop, 43 routing, 44 fragment, 60 destination options, 51 AH) are skipped:
  fragment header 8 bytes; AH (len+2)*4; others (len+1)*8; each must fit
  (``truncated_ipv6_ext``). ip.proto/ipv6.nexthdr follow the chain. A fragment header
  sets ip.frag when offset != 0 or M; offset != 0 ends the walk (non-first fragment).
  Still an extension header after the bound: ``ipv6_ext_limit``.
* Header length fields (ipv4.len, ipv6.plen, udp.len) are reported, never trusted:
  only the frame's end bounds the parse.
* No L4 decoder requested: ``ok`` (also for fragments). Non-first fragment:
  ``fragment``. Then by ip.proto: 6 TCP, 17 UDP, 1 ICMP (IPv4 only), 58 ICMPv6 (IPv6
  only), each ``ok`` if its decoder was not requested; anything else ``other_l4``.
* TCP: 20 bytes (``truncated_tcp``), data offset >= 5 (``bad_tcp_header``), doff*4
  bytes (``truncated_tcp``). UDP: 8 bytes. ICMP/ICMPv6: 8 bytes.
* DNS (if requested): UDP with sport or dport 53 needs 12 more bytes
  (``truncated_dns``).

pkt.len is the whole frame's length (the kernel's bpf_xdp_get_buff_len), pkt.ts the
timestamp given by the caller.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from compiler import parse_outcomes as po
from dsl.fields import FIELDS, LAYERS

__all__ = ["Decoded", "decode", "ALL_LAYERS", "IPV6_EXT_MAX", "V4_MAPPED_PREFIX"]

ALL_LAYERS = frozenset(LAYERS)
IPV6_EXT_MAX = 6
V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"

ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8)
IPV6_EXT = frozenset((0, 43, 44, 60, 51))
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6 = 6, 17, 1, 58
IPPROTO_FRAGMENT, IPPROTO_AH = 44, 51

_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from


@dataclass
class Decoded:
    """The decoder's verdict on one frame.

    ``fields`` holds every catalog field whose layer is present, by its dsl name:
    ints and bools as ``int`` (bools 0/1), MACs and addresses as ``bytes`` in network
    order (ip.src/ip.dst 16 bytes, IPv4 v4-mapped). Either-direction port fields
    (``tcp.port``, ``udp.port``, ``l4.port``) are tuples ``(sport, dport)``.
    """

    outcome: str
    layers: set[str]
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome_index(self) -> int:
        return po.index(self.outcome)

    def get(self, name: str, default=None):
        return self.fields.get(name, default)

    def __getitem__(self, name: str):
        return self.fields[name]

    def __contains__(self, name: str) -> bool:
        return name in self.fields


class _Stop(Exception):
    def __init__(self, outcome: str):
        self.outcome = outcome


class _State:
    __slots__ = ("buf", "end", "off", "layers", "f")

    def __init__(self, buf: bytes, end: int):
        self.buf = buf
        self.end = end
        self.off = 0
        self.layers: set[str] = {"pkt"}
        self.f: dict[str, Any] = {}

    def need(self, n: int, outcome: str) -> int:
        """Offset of the next ``n`` bytes (cursor unchanged), or stop with ``outcome``."""
        if self.off + n > self.end:
            raise _Stop(outcome)
        return self.off


def decode(
    frame: bytes,
    layers=ALL_LAYERS,
    *,
    ipv6_ext_max: int = IPV6_EXT_MAX,
    linear: int | None = None,
    ts: int = 0,
) -> Decoded:
    """Decode ``frame`` as the parser rendered for ``layers`` would.

    ``linear``: how many bytes the XDP program can read between data and data_end
    (None: all of them). Under BPF_PROG_TEST_RUN frames longer than
    runtime.dataplane.bpf_test_run.XDP_TEST_RUN_LINEAR are multi-buffer and only that many bytes
    are linear. ``ts`` becomes pkt.ts.
    """
    frame = bytes(frame)
    dec = po.decoders_for(layers)
    end = len(frame) if linear is None else min(len(frame), linear)
    s = _State(frame, end)
    s.f["pkt.len"] = len(frame)
    s.f["pkt.ts"] = ts
    try:
        outcome = _parse(s, dec, ipv6_ext_max)
    except _Stop as stop:
        outcome = stop.outcome
    return Decoded(outcome, s.layers, _derive(s.f, s.layers))


def _parse(s: _State, dec: frozenset[str], ext_max: int) -> str:
    etype = _eth(s)
    if not po.wants_l3(dec):
        return "ok"
    if etype == ETH_P_IPV4:
        if "ipv4" not in dec:
            return "ok"
        nonfirst = _ipv4(s)
    elif etype == ETH_P_IPV6:
        if "ipv6" not in dec:
            return "ok"
        nonfirst = _ipv6(s, ext_max)
    else:
        return "non_ip"
    if not po.wants_l4(dec):
        return "ok"
    if nonfirst:
        return "fragment"
    return _l4(s, dec)


def _eth(s: _State) -> int:
    b = s.buf
    o = s.need(14, "truncated_eth")
    s.f["eth.dst"] = b[o:o + 6]
    s.f["eth.src"] = b[o + 6:o + 12]
    etype = _u16(b, o + 12)[0]
    s.f["eth.type"] = etype
    s.layers.add("eth")
    s.off = o + 14
    for depth in (1, 2):
        if etype not in VLAN_TPIDS:
            return etype
        o = s.need(4, "truncated_vlan")
        tci, inner_type = struct.unpack_from("!HH", b, o)
        if depth == 1:
            s.f["vlan.id"] = tci & 0x0FFF
            s.f["vlan.pcp"] = tci >> 13
            s.f["vlan.inner"] = 0
        else:
            s.f["vlan.inner"] = tci & 0x0FFF
        s.f["vlan.depth"] = depth
        s.layers.add("vlan")
        etype = inner_type
        s.f["eth.type"] = etype
        s.off = o + 4
    if etype in VLAN_TPIDS:
        raise _Stop("vlan_too_deep")
    return etype


def _ipv4(s: _State) -> bool:
    """Parse the IPv4 header; True for a non-first fragment."""
    b = s.buf
    o = s.need(20, "truncated_ipv4")
    vihl = b[o]
    ihl = vihl & 0x0F
    if vihl >> 4 != 4 or ihl < 5:
        raise _Stop("bad_ipv4_header")
    s.need(ihl * 4, "truncated_ipv4")
    tos, tot_len, ident, frag, ttl, proto = struct.unpack_from("!BHHHBB", b, o + 1)
    f = s.f
    f["ipv4.ihl"] = ihl
    f["ipv4.tos"] = tos
    f["ipv4.len"] = tot_len
    f["ipv4.id"] = ident
    f["_ipv4.frag"] = frag
    f["ip.ttl"] = ttl
    f["ip.proto"] = proto
    f["_src"] = V4_MAPPED_PREFIX + b[o + 12:o + 16]
    f["_dst"] = V4_MAPPED_PREFIX + b[o + 16:o + 20]
    f["ip.version"] = 4
    f["ip.frag"] = int((frag & 0x3FFF) != 0)  # MF or a fragment offset
    s.layers |= {"ipv4", "ip"}
    s.off = o + ihl * 4
    return (frag & 0x1FFF) != 0


def _ipv6(s: _State, ext_max: int) -> bool:
    """Parse the IPv6 header and skip extension headers; True for a non-first fragment."""
    b = s.buf
    o = s.need(40, "truncated_ipv6")
    if b[o] >> 4 != 6:
        raise _Stop("bad_ipv6_header")
    f = s.f
    f["ipv6.tc"] = ((b[o] & 0x0F) << 4) | (b[o + 1] >> 4)
    f["ipv6.flow"] = ((b[o + 1] & 0x0F) << 16) | (b[o + 2] << 8) | b[o + 3]
    f["ipv6.plen"] = _u16(b, o + 4)[0]
    nh = b[o + 6]
    f["ip.proto"] = nh
    f["ip.ttl"] = b[o + 7]
    f["_src"] = b[o + 8:o + 24]
    f["_dst"] = b[o + 24:o + 40]
    f["ip.version"] = 6
    f["ip.frag"] = 0
    s.layers |= {"ipv6", "ip"}
    s.off = o + 40
    for _ in range(ext_max):
        if nh not in IPV6_EXT:
            return False
        if nh == IPPROTO_FRAGMENT:
            o = s.need(8, "truncated_ipv6_ext")
            fo = _u16(b, o + 2)[0]  # offset<<3 | res<<1 | M
            nh = b[o]
            f["ip.proto"] = nh
            s.off = o + 8
            if fo & 0xFFF9:
                f["ip.frag"] = 1
            if fo & 0xFFF8:
                return True
            continue
        o = s.need(2, "truncated_ipv6_ext")
        hlen = (b[o + 1] + 2) * 4 if nh == IPPROTO_AH else (b[o + 1] + 1) * 8
        s.need(hlen, "truncated_ipv6_ext")
        nh = b[o]
        f["ip.proto"] = nh
        s.off = o + hlen
    if nh in IPV6_EXT:
        raise _Stop("ipv6_ext_limit")
    return False


def _l4(s: _State, dec: frozenset[str]) -> str:
    b = s.buf
    f = s.f
    proto = f["ip.proto"]
    v6 = f["ip.version"] == 6
    if proto == IPPROTO_TCP:
        if "tcp" not in dec:
            return "ok"
        o = s.need(20, "truncated_tcp")
        doff = b[o + 12] >> 4
        if doff < 5:
            raise _Stop("bad_tcp_header")
        s.need(doff * 4, "truncated_tcp")
        sport, dport, seq, ack = struct.unpack_from("!HHII", b, o)
        f["_sport"], f["_dport"] = sport, dport
        f["tcp.seq"], f["tcp.ackno"] = seq, ack
        f["tcp.flags"] = b[o + 13]
        f["tcp.window"] = _u16(b, o + 14)[0]
        s.layers |= {"tcp", "l4"}
        s.off = o + doff * 4
        return "ok"
    if proto == IPPROTO_UDP:
        if "udp" not in dec:
            return "ok"
        o = s.need(8, "truncated_udp")
        sport, dport, ulen = struct.unpack_from("!HHH", b, o)
        f["_sport"], f["_dport"] = sport, dport
        f["udp.len"] = ulen
        s.layers |= {"udp", "l4"}
        s.off = o + 8
        if "dns" in dec and (sport == 53 or dport == 53):
            o = s.need(12, "truncated_dns")
            ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", b, o)
            f["dns.id"] = ident
            f["_dns.flags"] = flags
            f["dns.qdcount"], f["dns.ancount"] = qd, an
            f["dns.nscount"], f["dns.arcount"] = ns, ar
            s.layers.add("dns")
            s.off = o + 12
        return "ok"
    if proto == IPPROTO_ICMP and not v6:
        if "icmp" not in dec:
            return "ok"
        o = s.need(8, "truncated_icmp")
        f["_icmp.type"], f["_icmp.code"] = b[o], b[o + 1]
        s.layers.add("icmp")
        s.off = o + 8
        return "ok"
    if proto == IPPROTO_ICMPV6 and v6:
        if "icmp6" not in dec:
            return "ok"
        o = s.need(8, "truncated_icmp6")
        f["_icmp.type"], f["_icmp.code"] = b[o], b[o + 1]
        s.layers.add("icmp6")
        s.off = o + 8
        return "ok"
    return "other_l4"


def _derive(raw: dict[str, Any], layers: set[str]) -> dict[str, Any]:
    """Catalog fields from the raw values, keeping only those whose layer is present.

    Raw keys starting with "_" are storage shared by several catalog fields (as in
    struct xm_pkt): the two addresses, the ports, the ICMP type/code, the flag words.
    """
    v: dict[str, Any] = {k: x for k, x in raw.items() if not k.startswith("_")}
    if "ip" in layers:
        v["ip.src"], v["ip.dst"] = raw["_src"], raw["_dst"]
    if "ipv4" in layers:
        v["ipv4.src"], v["ipv4.dst"] = raw["_src"][12:], raw["_dst"][12:]
        v["ipv4.proto"] = raw["ip.proto"]
        v["ipv4.ttl"] = raw["ip.ttl"]
        fr = raw["_ipv4.frag"]
        v["ipv4.df"] = (fr >> 14) & 1
        v["ipv4.mf"] = (fr >> 13) & 1
        v["ipv4.frag_off"] = fr & 0x1FFF
    if "ipv6" in layers:
        v["ipv6.src"], v["ipv6.dst"] = raw["_src"], raw["_dst"]
        v["ipv6.nexthdr"] = raw["ip.proto"]
        v["ipv6.hlim"] = raw["ip.ttl"]
    if "tcp" in layers:
        v["tcp.sport"], v["tcp.dport"] = raw["_sport"], raw["_dport"]
        fl = raw["tcp.flags"]
        for bit, nm in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")):
            v[f"tcp.{nm}"] = (fl >> bit) & 1
    if "udp" in layers:
        v["udp.sport"], v["udp.dport"] = raw["_sport"], raw["_dport"]
    if "l4" in layers:
        v["l4.sport"], v["l4.dport"] = raw["_sport"], raw["_dport"]
    if "icmp" in layers:
        v["icmp.type"], v["icmp.code"] = raw["_icmp.type"], raw["_icmp.code"]
    if "icmp6" in layers:
        v["icmp6.type"], v["icmp6.code"] = raw["_icmp.type"], raw["_icmp.code"]
    if "dns" in layers:
        fl = raw["_dns.flags"]
        v["dns.qr"] = (fl >> 15) & 1
        v["dns.opcode"] = (fl >> 11) & 0x0F
        v["dns.aa"] = (fl >> 10) & 1
        v["dns.tc"] = (fl >> 9) & 1
        v["dns.rd"] = (fl >> 8) & 1
        v["dns.ra"] = (fl >> 7) & 1
        v["dns.rcode"] = fl & 0x0F
    for fname, fdef in FIELDS.items():
        if fdef.either and fdef.layer in layers:
            v[fname] = (v[fdef.either[0]], v[fdef.either[1]])
    # Keep exactly the catalog fields whose layer is present.
    return {k: x for k, x in v.items() if k in FIELDS and FIELDS[k].layer in layers}
