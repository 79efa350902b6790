"""The packet fields a spec can name: their types and the layers they need.

This table is the language's whole knowledge of packets. The compiler maps each
field to C (compiler/c_fields.py) and the reference interpreter to Python; both
are checked against this table so that a field cannot exist in one and not the
other.

Layers form a small lattice: ``ip`` means "IPv4 or IPv6", ``l4`` means "TCP or
UDP" and ``dns`` needs UDP on port 53. A field whose layer is absent from a
packet is *absent*: every comparison on it is false (pcap-filter semantics).
Non-first IP fragments have no L4 header, so every l4/tcp/udp/icmp/dns field
is absent on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """Value kinds. Integers carry their width in bits."""

    BOOL = "bool"
    INT = "int"
    MAC = "mac"      # 6 bytes
    IP4 = "ip4"      # 4 bytes
    IP6 = "ip6"      # 16 bytes
    IP = "ip"        # 16 bytes, IPv4 as v4-mapped ::ffff:a.b.c.d

    @property
    def is_addr(self) -> bool:
        return self in (Kind.IP4, Kind.IP6, Kind.IP)


@dataclass(frozen=True)
class Field:
    name: str          # "tcp.sport"
    kind: Kind
    bits: int          # storage width: 1 for bool, 8..64 for ints, 48/32/128 for addresses
    layer: str         # the layer that must be present for the field to exist
    doc: str
    either: tuple[str, str] | None = None  # port pseudo-fields: (sport, dport)
    domain: int | None = None  # bits its values fit in, where fewer than ``bits`` (dns.rcode: 4)

    @property
    def nbytes(self) -> int:
        return max(1, (self.bits + 7) // 8)

    @property
    def value_bits(self) -> int:
        """The bits every value of the field fits in (the parser masks it so)."""
        return self.domain or self.bits


# Layers and what each one implies is present too. A packet "has" a layer when it
# was parsed completely (not truncated) and, for L4 layers, is not a non-first
# fragment.
LAYERS: dict[str, str] = {
    "eth": "Ethernet II header",
    "vlan": "at least one 802.1Q/802.1ad tag",
    "ipv4": "IPv4 header (options skipped by IHL)",
    "ipv6": "IPv6 header (extension headers skipped, up to a fixed bound)",
    "ip": "IPv4 or IPv6",
    "tcp": "TCP header, first fragment",
    "udp": "UDP header, first fragment",
    "l4": "TCP or UDP header",
    "icmp": "ICMP header (over IPv4)",
    "icmp6": "ICMPv6 header (over IPv6)",
    "dns": "DNS header over UDP port 53 (either direction)",
    "pkt": "always present: the frame itself",
}

# Layers whose presence implies another's (used for "T1 guarantees" reasoning).
IMPLIES: dict[str, tuple[str, ...]] = {
    "ipv4": ("ip",),
    "ipv6": ("ip",),
    "tcp": ("l4", "ip"),
    "udp": ("l4", "ip"),
    "l4": ("ip",),
    "icmp": ("ipv4", "ip"),
    "icmp6": ("ipv6", "ip"),
    "dns": ("udp", "l4", "ip"),
    "vlan": ("eth",),
}


def implied_layers(layer: str) -> set[str]:
    """The layer itself and every layer its presence guarantees."""
    out = {layer}
    for other in IMPLIES.get(layer, ()):
        out |= implied_layers(other)
    return out


def _f(name, kind, bits, layer, doc, either=None, domain=None):
    return Field(name, Kind(kind), bits, layer, doc, either, domain)


_FIELDS = [
    # Ethernet and VLAN
    _f("eth.src", "mac", 48, "eth", "source MAC address"),
    _f("eth.dst", "mac", 48, "eth", "destination MAC address"),
    _f("eth.type", "int", 16, "eth", "EtherType after any VLAN tags"),
    _f("vlan.id", "int", 16, "vlan", "VLAN id of the outer tag (802.1Q or 802.1ad)", domain=12),
    _f("vlan.pcp", "int", 8, "vlan", "priority code point of the outer tag", domain=3),
    _f("vlan.inner", "int", 16, "vlan", "VLAN id of the inner tag in QinQ, 0 if none", domain=12),
    _f("vlan.depth", "int", 8, "vlan", "number of VLAN tags (1 or 2)", domain=2),
    # IPv4
    _f("ipv4.src", "ip4", 32, "ipv4", "IPv4 source address"),
    _f("ipv4.dst", "ip4", 32, "ipv4", "IPv4 destination address"),
    _f("ipv4.proto", "int", 8, "ipv4", "IPv4 protocol number"),
    _f("ipv4.ttl", "int", 8, "ipv4", "time to live"),
    _f("ipv4.tos", "int", 8, "ipv4", "type of service / DSCP+ECN byte"),
    _f("ipv4.len", "int", 16, "ipv4", "total length from the header"),
    _f("ipv4.id", "int", 16, "ipv4", "identification"),
    _f("ipv4.ihl", "int", 8, "ipv4", "header length in 32-bit words", domain=4),
    _f("ipv4.df", "bool", 1, "ipv4", "don't-fragment flag"),
    _f("ipv4.mf", "bool", 1, "ipv4", "more-fragments flag"),
    _f("ipv4.frag_off", "int", 16, "ipv4", "fragment offset in 8-byte units", domain=13),
    # IPv6
    _f("ipv6.src", "ip6", 128, "ipv6", "IPv6 source address"),
    _f("ipv6.dst", "ip6", 128, "ipv6", "IPv6 destination address"),
    _f("ipv6.nexthdr", "int", 8, "ipv6", "upper-layer protocol after extension headers"),
    _f("ipv6.hlim", "int", 8, "ipv6", "hop limit"),
    _f("ipv6.tc", "int", 8, "ipv6", "traffic class"),
    _f("ipv6.flow", "int", 32, "ipv6", "flow label (20 bits)", domain=20),
    _f("ipv6.plen", "int", 16, "ipv6", "payload length from the header"),
    # Family-neutral IP
    _f("ip.src", "ip", 128, "ip", "source address (IPv4 as v4-mapped IPv6)"),
    _f("ip.dst", "ip", 128, "ip", "destination address (IPv4 as v4-mapped IPv6)"),
    _f("ip.proto", "int", 8, "ip", "upper-layer protocol (IPv6: after extension headers)"),
    _f("ip.ttl", "int", 8, "ip", "TTL (IPv4) or hop limit (IPv6)"),
    _f("ip.version", "int", 8, "ip", "4 or 6", domain=3),
    _f("ip.frag", "bool", 1, "ip", "the packet is an IP fragment (first or not)"),
    # TCP
    _f("tcp.sport", "int", 16, "tcp", "TCP source port"),
    _f("tcp.dport", "int", 16, "tcp", "TCP destination port"),
    _f("tcp.port", "int", 16, "tcp", "either TCP port (source or destination)",
       either=("tcp.sport", "tcp.dport")),
    _f("tcp.seq", "int", 32, "tcp", "sequence number"),
    _f("tcp.ackno", "int", 32, "tcp", "acknowledgement number"),
    _f("tcp.window", "int", 16, "tcp", "receive window"),
    _f("tcp.flags", "int", 8, "tcp", "the flag byte (CWR ECE URG ACK PSH RST SYN FIN)"),
    _f("tcp.fin", "bool", 1, "tcp", "FIN flag"),
    _f("tcp.syn", "bool", 1, "tcp", "SYN flag"),
    _f("tcp.rst", "bool", 1, "tcp", "RST flag"),
    _f("tcp.psh", "bool", 1, "tcp", "PSH flag"),
    _f("tcp.ack", "bool", 1, "tcp", "ACK flag"),
    _f("tcp.urg", "bool", 1, "tcp", "URG flag"),
    _f("tcp.ece", "bool", 1, "tcp", "ECE flag"),
    _f("tcp.cwr", "bool", 1, "tcp", "CWR flag"),
    # UDP
    _f("udp.sport", "int", 16, "udp", "UDP source port"),
    _f("udp.dport", "int", 16, "udp", "UDP destination port"),
    _f("udp.port", "int", 16, "udp", "either UDP port (source or destination)",
       either=("udp.sport", "udp.dport")),
    _f("udp.len", "int", 16, "udp", "UDP length from the header"),
    # TCP or UDP
    _f("l4.sport", "int", 16, "l4", "TCP or UDP source port"),
    _f("l4.dport", "int", 16, "l4", "TCP or UDP destination port"),
    _f("l4.port", "int", 16, "l4", "either TCP/UDP port (source or destination)",
       either=("l4.sport", "l4.dport")),
    # ICMP
    _f("icmp.type", "int", 8, "icmp", "ICMP type"),
    _f("icmp.code", "int", 8, "icmp", "ICMP code"),
    _f("icmp6.type", "int", 8, "icmp6", "ICMPv6 type"),
    _f("icmp6.code", "int", 8, "icmp6", "ICMPv6 code"),
    # DNS header (UDP port 53, either direction)
    _f("dns.id", "int", 16, "dns", "transaction id"),
    _f("dns.qr", "bool", 1, "dns", "response flag (QR)"),
    _f("dns.opcode", "int", 8, "dns", "opcode", domain=4),
    _f("dns.aa", "bool", 1, "dns", "authoritative answer flag"),
    _f("dns.tc", "bool", 1, "dns", "truncation flag"),
    _f("dns.rd", "bool", 1, "dns", "recursion desired flag"),
    _f("dns.ra", "bool", 1, "dns", "recursion available flag"),
    _f("dns.rcode", "int", 8, "dns", "response code", domain=4),
    _f("dns.qdcount", "int", 16, "dns", "question count"),
    _f("dns.ancount", "int", 16, "dns", "answer count"),
    _f("dns.nscount", "int", 16, "dns", "authority count"),
    _f("dns.arcount", "int", 16, "dns", "additional count"),
    # The frame
    _f("pkt.len", "int", 32, "pkt", "frame length in bytes"),
    _f("pkt.ts", "int", 64, "pkt", "timestamp in nanoseconds (capture time under replay)"),
]

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}

# Each TCP flag's bit in tcp.flags (the byte CWR ECE URG ACK PSH RST SYN FIN), bit 0 = FIN.
TCP_FLAG_BITS = {f"tcp.{n}": b for b, n in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"))}


def lookup(name: str) -> Field | None:
    return FIELDS.get(name)


def names_in_layer(layer: str) -> list[str]:
    return [f.name for f in _FIELDS if f.layer == layer]
