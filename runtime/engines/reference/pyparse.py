"""The XDP parser (codegen_templates/parse.c.j2) as generated Python source.

The reference engine does not call runtime/engines/reference/decoder.py per frame: that
decoder builds a dict of every catalog field, which is too slow for the engine's
budget. Instead this module renders, for one layer request, straight-line Python
that fills *storage variables* named after the members of the C ``struct xm_pkt``
(``sport``, ``ip_proto``, ``src`` ...), with the same partial-fill behaviour as the
C parser: a member is written exactly where the C writes it, so a field read from
storage whose layer is absent gives what the kernel gives (0, or the value of
another layer sharing the storage: ``tcp.dport`` of a UDP packet is its UDP port).
(``send packet(...)`` records no longer depend on it: the C copies a field of an
absent layer as zeros, and so does the reference.)

The rendered parser is checked against decoder.py (which is checked against the
kernel on the whole corpus) by tests/test_reference.py.

Storage names are the C member names with three renames: ``len`` -> ``plen`` (a
Python builtin), ``layers`` -> ``L``, and ``src``/``dst`` (``union xm_addr``) are
16-byte ``bytes`` (IPv4 v4-mapped). The frame is ``data`` and the parser may read
``end`` bytes of it (the linear part of the XDP buffer).
"""

from __future__ import annotations

import re

from compiler import c_fields
from compiler import parse_outcomes as po
from dsl.fields import FIELDS

BIT = c_fields.LAYER_BITS
OUT = {o.name: o.index for o in po.OUTCOMES}

# storage variable -> its zero value (the C memset), as Python source
STORAGE: dict[str, str] = {
    "eth_dst": "Z6", "eth_src": "Z6", "eth_type": "0",
    "vlan_id": "0", "vlan_inner": "0", "vlan_pcp": "0", "vlan_depth": "0",
    "src": "Z16", "dst": "Z16",
    "ip_version": "0", "ip_proto": "0", "ip_ttl": "0", "ip_tos": "0", "ip_frag": "0", "ipv4_ihl": "0",
    "ip_len": "0", "ipv4_id": "0", "ipv4_frag": "0", "ipv6_flow": "0",
    "sport": "0", "dport": "0", "tcp_seq": "0", "tcp_ackno": "0", "tcp_window": "0", "tcp_flags": "0",
    "icmp_type": "0", "icmp_code": "0", "udp_len": "0",
    "dns_id": "0", "dns_flags": "0", "dns_qdcount": "0", "dns_ancount": "0", "dns_nscount": "0",
    "dns_arcount": "0",
}
ALWAYS = ("plen", "ts", "L")      # set before parsing, by the engine

_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*")


def field_expr(name: str) -> str:
    """Python expression reading catalog field ``name`` from storage (like the C
    expression of compiler/c_fields.py). Addresses are ``bytes``; ints are ints."""
    e = c_fields.expr(name)
    e = e.replace("p->src.w[3]", "src[12:16]").replace("p->dst.w[3]", "dst[12:16]")
    e = e.replace("p->src.b", "src").replace("p->dst.b", "dst")
    e = e.replace("p->len", "plen").replace("p->layers", "L")
    return e.replace("p->", "")


def storage_of(names) -> set[str]:
    """The storage variables the fields ``names`` read: the struct members they live in
    (compiler/c_fields.py members_of, as the C parser's stores), but those set before parsing."""
    return set().union(*(c_fields.members_of(n) for n in names)) & STORAGE.keys()


def check_catalog() -> list[str]:
    """Problems: catalog fields that do not map to valid storage expressions."""
    problems = []
    for name, f in FIELDS.items():
        if f.either:
            continue
        e = field_expr(name)
        if "p->" in e or "->" in e:
            problems.append(f"{name}: {e}")
        for ident in _IDENT.findall(e):
            if ident not in STORAGE and ident not in ALWAYS:
                problems.append(f"{name}: unknown storage {ident}")
    return problems


class _Src:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, ind: int, text: str) -> None:
        self.lines.append("    " * ind + text)


def render(layers, ipv6_ext_max: int, keep, ind: int = 1) -> list[str]:
    """Python lines (indented ``ind`` levels) parsing ``data[:end]`` for the
    closed layer request ``layers``; they leave the outcome index in ``outcome``
    and the layer bits in ``L`` (which must start as the PKT bit) and assign the
    storage variables in ``keep`` (others are skipped: nobody reads them).

    The lines are a ``while True:`` block left by ``break`` (the C's ``return``).
    """
    dec = po.decoders_for(layers)
    layers = set(layers)
    k = set(keep)
    s = _Src()

    def st(i, var, value):
        if var in k:
            s(i, f"{var} = {value}")

    TPIDS = "(0x8100, 0x88A8)"
    s(ind, "while True:")
    i = ind + 1
    # ---- Ethernet and VLAN (always)
    s(i, "if end < 14:")
    s(i + 1, f"outcome = {OUT['truncated_eth']}")
    s(i + 1, "break")
    st(i, "eth_dst", "data[0:6]")
    st(i, "eth_src", "data[6:12]")
    s(i, "etype = (data[12] << 8) | data[13]")
    s(i, f"L |= {BIT['eth']}")
    s(i, "off = 14")
    s(i, f"if etype in {TPIDS}:")
    s(i + 1, "if end < 18:")
    s(i + 2, f"outcome = {OUT['truncated_vlan']}")
    st(i + 2, "eth_type", "etype")
    s(i + 2, "break")
    s(i + 1, "tci = (data[14] << 8) | data[15]")
    st(i + 1, "vlan_id", "tci & 0x0FFF")
    st(i + 1, "vlan_pcp", "tci >> 13")
    st(i + 1, "vlan_depth", "1")
    s(i + 1, f"L |= {BIT['vlan']}")
    s(i + 1, "etype = (data[16] << 8) | data[17]")
    s(i + 1, "off = 18")
    s(i + 1, f"if etype in {TPIDS}:")
    s(i + 2, "if end < 22:")
    s(i + 3, f"outcome = {OUT['truncated_vlan']}")
    st(i + 3, "eth_type", "etype")
    s(i + 3, "break")
    st(i + 2, "vlan_inner", "((data[18] << 8) | data[19]) & 0x0FFF")
    st(i + 2, "vlan_depth", "2")
    s(i + 2, "etype = (data[20] << 8) | data[21]")
    s(i + 2, "off = 22")
    s(i + 2, f"if etype in {TPIDS}:")
    s(i + 3, f"outcome = {OUT['vlan_too_deep']}")
    st(i + 3, "eth_type", "etype")
    s(i + 3, "break")
    st(i, "eth_type", "etype")
    if not po.wants_l3(dec):
        s(i, "break")
        return s.lines
    wants_l4 = po.wants_l4(dec)
    # ---- IPv4
    s(i, "nonfirst = False")
    s(i, "if etype == 0x0800:")
    if "ipv4" in dec:
        j = i + 1
        s(j, "if off + 20 > end:")
        s(j + 1, f"outcome = {OUT['truncated_ipv4']}")
        s(j + 1, "break")
        s(j, "vihl = data[off]")
        s(j, "ihl = vihl & 0x0F")
        s(j, "if (vihl >> 4) != 4 or ihl < 5:")
        s(j + 1, f"outcome = {OUT['bad_ipv4_header']}")
        s(j + 1, "break")
        s(j, "if off + ihl * 4 > end:")
        s(j + 1, f"outcome = {OUT['truncated_ipv4']}")
        s(j + 1, "break")
        s(j, "_tos, _tlen, _id, frag, _ttl, proto = IP4H(data, off + 1)")
        st(j, "ip_version", "4")
        st(j, "ipv4_ihl", "ihl")
        st(j, "ip_tos", "_tos")
        st(j, "ip_len", "_tlen")
        st(j, "ipv4_id", "_id")
        st(j, "ipv4_frag", "frag")
        st(j, "ip_ttl", "_ttl")
        s(j, "ip_proto = proto")
        st(j, "ip_frag", "1 if frag & 0x3FFF else 0")
        st(j, "src", "V4P + data[off + 12:off + 16]")
        st(j, "dst", "V4P + data[off + 16:off + 20]")
        s(j, f"L |= {BIT['ipv4'] | BIT['ip']}")
        s(j, "off += ihl * 4")
        s(j, "v6 = False")
        s(j, "if frag & 0x1FFF:")
        if wants_l4:
            s(j + 1, f"outcome = {OUT['fragment']}")
        s(j + 1, "break")
    else:
        s(i + 1, "break")
    # ---- IPv6
    s(i, "elif etype == 0x86DD:")
    if "ipv6" in dec:
        j = i + 1
        s(j, "if off + 40 > end:")
        s(j + 1, f"outcome = {OUT['truncated_ipv6']}")
        s(j + 1, "break")
        s(j, "b0 = data[off]")
        s(j, "if (b0 >> 4) != 6:")
        s(j + 1, f"outcome = {OUT['bad_ipv6_header']}")
        s(j + 1, "break")
        s(j, "b1 = data[off + 1]")
        st(j, "ip_version", "6")
        st(j, "ip_tos", "((b0 << 4) & 0xFF) | (b1 >> 4)")
        st(j, "ipv6_flow", "((b1 & 0x0F) << 16) | (data[off + 2] << 8) | data[off + 3]")
        st(j, "ip_len", "(data[off + 4] << 8) | data[off + 5]")
        s(j, "nh = data[off + 6]")
        s(j, "ip_proto = nh")
        st(j, "ip_ttl", "data[off + 7]")
        st(j, "src", "data[off + 8:off + 24]")
        st(j, "dst", "data[off + 24:off + 40]")
        s(j, f"L |= {BIT['ipv6'] | BIT['ip']}")
        s(j, "off += 40")
        s(j, "v6 = True")
        # extension headers: at most ipv6_ext_max, each checked against end
        s(j, "for _x in EXT_RANGE:")
        s(j + 1, "if nh not in IPV6_EXT:")
        s(j + 2, "break")
        s(j + 1, "if off + 8 > end:")
        s(j + 2, f"outcome = {OUT['truncated_ipv6_ext']}")
        s(j + 2, "break")
        s(j + 1, "if nh == 44:")
        s(j + 2, "fo = (data[off + 2] << 8) | data[off + 3]")
        s(j + 2, "if fo & 0xFFF9:")
        st(j + 3, "ip_frag", "1")
        s(j + 3, "pass")
        s(j + 2, "if fo & 0xFFF8:")
        s(j + 3, "ip_proto = data[off]")
        s(j + 3, "off += 8")
        s(j + 3, "nonfirst = True")
        s(j + 3, "break")
        s(j + 2, "hlen = 8")
        s(j + 1, "elif nh == 51:")
        s(j + 2, "hlen = (data[off + 1] + 2) * 4")
        s(j + 1, "else:")
        s(j + 2, "hlen = (data[off + 1] + 1) * 8")
        s(j + 1, "nh = data[off]")
        s(j + 1, "if off + hlen > end:")
        s(j + 2, f"outcome = {OUT['truncated_ipv6_ext']}")
        s(j + 2, "break")
        s(j + 1, "off += hlen")
        s(j + 1, "ip_proto = nh")
        s(j, "else:")
        s(j + 1, "if nh in IPV6_EXT:")
        s(j + 2, f"outcome = {OUT['ipv6_ext_limit']}")
        s(j, "if outcome:")
        s(j + 1, "break")
        s(j, "if nonfirst:")
        if wants_l4:
            s(j + 1, f"outcome = {OUT['fragment']}")
        s(j + 1, "break")
    else:
        s(i + 1, "break")
    s(i, "else:")
    s(i + 1, f"outcome = {OUT['non_ip']}")
    s(i + 1, "break")
    if not wants_l4:
        s(i, "break")
        return s.lines
    # ---- L4 dispatch
    s(i, "if ip_proto == 6:")
    j = i + 1
    if "tcp" in dec:
        s(j, "if off + 20 > end:")
        s(j + 1, f"outcome = {OUT['truncated_tcp']}")
        s(j + 1, "break")
        s(j, "doff = data[off + 12] >> 4")
        s(j, "if doff < 5:")
        s(j + 1, f"outcome = {OUT['bad_tcp_header']}")
        s(j + 1, "break")
        s(j, "if off + doff * 4 > end:")
        s(j + 1, f"outcome = {OUT['truncated_tcp']}")
        s(j + 1, "break")
        need = [v for v in ("sport", "dport", "tcp_seq", "tcp_ackno") if v in k]
        if need:
            s(j, "_sp, _dp, _seq, _ack = TCPH(data, off)")
            for v, t in (("sport", "_sp"), ("dport", "_dp"), ("tcp_seq", "_seq"), ("tcp_ackno", "_ack")):
                st(j, v, t)
        st(j, "tcp_flags", "data[off + 13]")
        st(j, "tcp_window", "(data[off + 14] << 8) | data[off + 15]")
        s(j, f"L |= {BIT['tcp'] | BIT['l4']}")
    s(j, "break")
    s(i, "if ip_proto == 17:")
    if "udp" in dec:
        s(j, "if off + 8 > end:")
        s(j + 1, f"outcome = {OUT['truncated_udp']}")
        s(j + 1, "break")
        s(j, "_sp = (data[off] << 8) | data[off + 1]")
        s(j, "_dp = (data[off + 2] << 8) | data[off + 3]")
        st(j, "sport", "_sp")
        st(j, "dport", "_dp")
        st(j, "udp_len", "(data[off + 4] << 8) | data[off + 5]")
        s(j, f"L |= {BIT['udp'] | BIT['l4']}")
        if "dns" in dec:
            s(j, "if _sp == 53 or _dp == 53:")
            s(j + 1, "if off + 20 > end:")
            s(j + 2, f"outcome = {OUT['truncated_dns']}")
            s(j + 2, "break")
            if any(v in k for v in ("dns_id", "dns_flags", "dns_qdcount", "dns_ancount", "dns_nscount",
                                    "dns_arcount")):
                s(j + 1, "_i, _f, _qd, _an, _ns, _ar = DNSH(data, off + 8)")
                for v, t in (("dns_id", "_i"), ("dns_flags", "_f"), ("dns_qdcount", "_qd"),
                             ("dns_ancount", "_an"), ("dns_nscount", "_ns"), ("dns_arcount", "_ar")):
                    st(j + 1, v, t)
            s(j + 1, f"L |= {BIT['dns']}")
    s(j, "break")
    for proto, fam, layer, trunc in ((1, "not v6", "icmp", "truncated_icmp"), (58, "v6", "icmp6", "truncated_icmp6")):
        s(i, f"if ip_proto == {proto} and {fam}:")
        if layer in dec:
            s(j, "if off + 8 > end:")
            s(j + 1, f"outcome = {OUT[trunc]}")
            s(j + 1, "break")
            st(j, "icmp_type", "data[off]")
            st(j, "icmp_code", "data[off + 1]")
            s(j, f"L |= {BIT[layer]}")
        s(j, "break")
    s(i, f"outcome = {OUT['other_l4']}")
    s(i, "break")
    return s.lines


PRELUDE = {
    "Z6": bytes(6),
    "Z16": bytes(16),
    "V4P": b"\x00" * 10 + b"\xff\xff",
    "IPV6_EXT": frozenset((0, 43, 44, 51, 60)),
}


def namespace(ipv6_ext_max: int) -> dict:
    import struct
    ns = dict(PRELUDE)
    ns["EXT_RANGE"] = range(ipv6_ext_max)
    ns["IP4H"] = struct.Struct("!BHHHBB").unpack_from
    ns["TCPH"] = struct.Struct("!HHII").unpack_from
    ns["DNSH"] = struct.Struct("!6H").unpack_from
    return ns


def decoder_function(layers, ipv6_ext_max: int):
    """A function ``f(data, end) -> (outcome, layer bits, {storage: value})`` that
    parses like the rendered C parser and returns every storage member (for tests)."""
    keep = set(STORAGE)
    lines = ["def _decode(data, end):", "    L = %d" % BIT["pkt"], "    outcome = 0", "    ip_proto = 0"]
    lines += [f"    {v} = {z}" for v, z in STORAGE.items() if v != "ip_proto"]
    lines += render(layers, ipv6_ext_max, keep, 1)
    lines.append("    return outcome, L, {%s}" % ", ".join(f"{v!r}: {v}" for v in STORAGE))
    ns = namespace(ipv6_ext_max)
    exec(compile("\n".join(lines) + "\n", "<xdpmon-reference-parser>", "exec"), ns)
    return ns["_decode"]
