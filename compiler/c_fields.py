"""How the generated C reads each catalog field from the parser's ``struct xm_pkt``.

For every field of dsl.fields.FIELDS: the C expression that reads it from
``struct xm_pkt *p`` (codegen_templates/parse.c.j2), its C type, and the layer bit that
must be set in ``p->layers`` for the field to be present. A predicate on a field whose
bit is clear is false (pcap-filter semantics), so the code generator guards every use:
``(p->layers & XM_L_TCP) && p->dport == 80``.

Either-direction pseudo-fields (``tcp.port``, ``udp.port``, ``l4.port``) have no single
expression: they map to their two halves (``either``), and ``udp.port == 53`` becomes
``(sport == 53 || dport == 53)`` under the same guard.

Integers are in host byte order; addresses are network-order bytes: ``__u8[6]`` MACs,
``__u8[16]`` IPv6 / family-neutral addresses (IPv4 v4-mapped), and a ``__be32`` for
``ipv4.src``/``ipv4.dst`` (compare with ``bpf_htonl(constant)``). Array-typed fields are
copied with ``__builtin_memcpy`` (``nbytes``) into keys and events.

Several fields share storage (e.g. ``tcp.sport``, ``udp.sport`` and ``l4.sport`` are all
``p->sport``); only the layer bit tells them apart, which is what lets the parser fill
each slot once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dsl.fields import FIELDS, LAYERS, TCP_FLAG_BITS, Kind

__all__ = [
    "CField",
    "C_FIELDS",
    "LAYER_BITS",
    "LAYER_MACROS",
    "layer_macro",
    "c_field",
    "expr",
    "present_test",
    "check_against_catalog",
    "PKT_MEMBERS",
    "PARSER_NEEDS",
    "members_of",
    "parser_stores",
]

# XM_L_* bit of each layer: bit i for the i-th layer of dsl.fields.LAYERS (parse.c.j2
# defines the same macros; tests check they agree).
LAYER_MACROS: dict[str, str] = {layer: f"XM_L_{layer.upper()}" for layer in LAYERS}
LAYER_BITS: dict[str, int] = {layer: 1 << i for i, layer in enumerate(LAYERS)}


def layer_macro(layer: str) -> str:
    return LAYER_MACROS[layer]


@dataclass(frozen=True)
class CField:
    name: str                 # dsl name, e.g. "tcp.sport"
    expr: str | None          # C expression over `p` (None for either-direction fields)
    ctype: str                # "__u16", "__be32", "__u8[16]"...; "" for either fields
    layer: str                # dsl layer that must be present
    either: tuple[str, str] | None = None  # (sport, dport) halves for *.port

    @property
    def layer_bit(self) -> str:
        """The XM_L_* macro that must be set in p->layers."""
        return LAYER_MACROS[self.layer]

    @property
    def layer_mask(self) -> int:
        return LAYER_BITS[self.layer]

    @property
    def is_array(self) -> bool:
        return self.ctype.endswith("]")

    @property
    def nbytes(self) -> int:
        if self.either:
            return C_FIELDS[self.either[0]].nbytes
        if self.is_array:
            return int(self.ctype[self.ctype.index("[") + 1:-1])
        return {"__u8": 1, "__u16": 2, "__u32": 4, "__be32": 4, "__u64": 8}[self.ctype]

    def c(self, var: str = "p") -> str:
        """The expression over a pointer named ``var`` instead of ``p``."""
        if self.expr is None:
            raise ValueError(f"{self.name} is an either-direction field: use {self.either}")
        return self.expr.replace("p->", f"{var}->")


def _bit(member: str, shift: int) -> str:
    return f"((p->{member} >> {shift}) & 1)"



# name -> (expr, ctype). Layers come from the catalog.
_MAP: dict[str, tuple[str, str]] = {
    "eth.src": ("p->eth_src", "__u8[6]"),
    "eth.dst": ("p->eth_dst", "__u8[6]"),
    "eth.type": ("p->eth_type", "__u16"),
    "vlan.id": ("p->vlan_id", "__u16"),
    "vlan.pcp": ("p->vlan_pcp", "__u8"),
    "vlan.inner": ("p->vlan_inner", "__u16"),
    "vlan.depth": ("p->vlan_depth", "__u8"),
    "ipv4.src": ("p->src.w[3]", "__be32"),
    "ipv4.dst": ("p->dst.w[3]", "__be32"),
    "ipv4.proto": ("p->ip_proto", "__u8"),
    "ipv4.ttl": ("p->ip_ttl", "__u8"),
    "ipv4.tos": ("p->ip_tos", "__u8"),
    "ipv4.len": ("p->ip_len", "__u16"),
    "ipv4.id": ("p->ipv4_id", "__u16"),
    "ipv4.ihl": ("p->ipv4_ihl", "__u8"),
    "ipv4.df": (_bit("ipv4_frag", 14), "__u8"),
    "ipv4.mf": (_bit("ipv4_frag", 13), "__u8"),
    "ipv4.frag_off": ("(p->ipv4_frag & 0x1fff)", "__u16"),
    "ipv6.src": ("p->src.b", "__u8[16]"),
    "ipv6.dst": ("p->dst.b", "__u8[16]"),
    "ipv6.nexthdr": ("p->ip_proto", "__u8"),
    "ipv6.hlim": ("p->ip_ttl", "__u8"),
    "ipv6.tc": ("p->ip_tos", "__u8"),
    "ipv6.flow": ("p->ipv6_flow", "__u32"),
    "ipv6.plen": ("p->ip_len", "__u16"),
    "ip.src": ("p->src.b", "__u8[16]"),
    "ip.dst": ("p->dst.b", "__u8[16]"),
    "ip.proto": ("p->ip_proto", "__u8"),
    "ip.ttl": ("p->ip_ttl", "__u8"),
    "ip.version": ("p->ip_version", "__u8"),
    "ip.frag": ("p->ip_frag", "__u8"),
    "tcp.sport": ("p->sport", "__u16"),
    "tcp.dport": ("p->dport", "__u16"),
    "tcp.seq": ("p->tcp_seq", "__u32"),
    "tcp.ackno": ("p->tcp_ackno", "__u32"),
    "tcp.window": ("p->tcp_window", "__u16"),
    "tcp.flags": ("p->tcp_flags", "__u8"),
    **{name: (_bit("tcp_flags", b), "__u8") for name, b in TCP_FLAG_BITS.items()},
    "udp.sport": ("p->sport", "__u16"),
    "udp.dport": ("p->dport", "__u16"),
    "udp.len": ("p->udp_len", "__u16"),
    "l4.sport": ("p->sport", "__u16"),
    "l4.dport": ("p->dport", "__u16"),
    "icmp.type": ("p->icmp_type", "__u8"),
    "icmp.code": ("p->icmp_code", "__u8"),
    "icmp6.type": ("p->icmp_type", "__u8"),
    "icmp6.code": ("p->icmp_code", "__u8"),
    "dns.id": ("p->dns_id", "__u16"),
    "dns.qr": (_bit("dns_flags", 15), "__u8"),
    "dns.opcode": ("((p->dns_flags >> 11) & 0xf)", "__u8"),
    "dns.aa": (_bit("dns_flags", 10), "__u8"),
    "dns.tc": (_bit("dns_flags", 9), "__u8"),
    "dns.rd": (_bit("dns_flags", 8), "__u8"),
    "dns.ra": (_bit("dns_flags", 7), "__u8"),
    "dns.rcode": ("(p->dns_flags & 0xf)", "__u8"),
    "dns.qdcount": ("p->dns_qdcount", "__u16"),
    "dns.ancount": ("p->dns_ancount", "__u16"),
    "dns.nscount": ("p->dns_nscount", "__u16"),
    "dns.arcount": ("p->dns_arcount", "__u16"),
    "pkt.len": ("p->len", "__u32"),
    "pkt.ts": ("p->ts", "__u64"),
}


def _build() -> dict[str, CField]:
    out: dict[str, CField] = {}
    for name, f in FIELDS.items():
        if f.either:
            out[name] = CField(name, None, "", f.layer, f.either)
        else:
            e, t = _MAP[name]
            out[name] = CField(name, e, t, f.layer)
    return out


C_FIELDS: dict[str, CField] = _build()


def c_field(name: str) -> CField:
    return C_FIELDS[name]


def expr(name: str, var: str = "p") -> str:
    return C_FIELDS[name].c(var)


# The members of struct xm_pkt (codegen_templates/parse.c.j2) that hold catalog fields, in
# the struct's order, and those the parser and the program's own code read whatever the
# apps read (the EtherType, protocol and version steer the parse, the ports find DNS, the
# blocklist reads the source, the interface counters the length).
PKT_MEMBERS: tuple[str, ...] = (
    "ts", "len", "src", "dst", "eth_dst", "eth_src", "eth_type", "vlan_id", "vlan_inner", "vlan_pcp",
    "vlan_depth", "ip_version", "ip_proto", "ip_ttl", "ip_tos", "ip_frag", "ipv4_ihl", "ip_len",
    "ipv4_id", "ipv4_frag", "ipv6_flow", "sport", "dport", "tcp_seq", "tcp_ackno", "tcp_window",
    "tcp_flags", "icmp_type", "icmp_code", "udp_len", "dns_id", "dns_flags", "dns_qdcount",
    "dns_ancount", "dns_nscount", "dns_arcount",
)
PARSER_NEEDS: frozenset[str] = frozenset({"ts", "len", "src", "dst", "eth_type", "ip_version", "ip_proto",
                                          "sport", "dport"})
_MEMBER = re.compile(r"p->([a-z0-9_]+)")


def members_of(name: str) -> frozenset[str]:
    """The members of struct xm_pkt that catalog field ``name`` reads."""
    f = C_FIELDS[name]
    if f.either:
        return members_of(f.either[0]) | members_of(f.either[1])
    return frozenset(_MEMBER.findall(f.expr))


def parser_stores(fields=None) -> tuple[str, ...]:
    """The members the parser fills for a program reading catalog ``fields``: theirs and
    PARSER_NEEDS (struct order). None: every member (a parser rendered alone, for tests
    that read every field)."""
    if fields is None:
        return PKT_MEMBERS
    want = set(PARSER_NEEDS).union(*(members_of(n) for n in fields))
    return tuple(m for m in PKT_MEMBERS if m in want)


def present_test(name: str, var: str = "p") -> str:
    """C condition that is true when the field is present: ``(p->layers & XM_L_TCP)``."""
    return f"({var}->layers & {C_FIELDS[name].layer_bit})"


_KIND_CTYPES = {
    Kind.MAC: {"__u8[6]"},
    Kind.IP4: {"__be32"},
    Kind.IP6: {"__u8[16]"},
    Kind.IP: {"__u8[16]"},
    Kind.BOOL: {"__u8"},
}


def check_against_catalog() -> list[str]:
    """Problems with the mapping (empty when it covers dsl.fields.FIELDS exactly)."""
    problems: list[str] = []
    extra = set(_MAP) - set(FIELDS)
    if extra:
        problems.append(f"mapped but not in the catalog: {sorted(extra)}")
    for name, f in FIELDS.items():
        if f.either:
            if name in _MAP:
                problems.append(f"{name}: either-direction field must not have an expression")
            for half in f.either:
                if half not in FIELDS or FIELDS[half].layer != f.layer:
                    problems.append(f"{name}: half {half} missing or in another layer")
            continue
        if name not in _MAP:
            problems.append(f"{name}: no C mapping")
            continue
        cf = C_FIELDS[name]
        if f.kind in _KIND_CTYPES:
            if cf.ctype not in _KIND_CTYPES[f.kind]:
                problems.append(f"{name}: kind {f.kind.value} but C type {cf.ctype}")
        elif cf.nbytes * 8 < f.bits:
            problems.append(f"{name}: {f.bits} bits do not fit C type {cf.ctype}")
        if cf.is_array and cf.nbytes != f.nbytes:
            problems.append(f"{name}: {f.nbytes} bytes but C array of {cf.nbytes}")
        if f.layer not in LAYER_MACROS:
            problems.append(f"{name}: unknown layer {f.layer}")
    return problems
