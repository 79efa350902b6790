"""What happened when the XDP parser met a frame: one outcome per frame.

The parser (codegen_templates/parse.c.j2, function ``xm_parse``) returns the index of
one :class:`Outcome`: ``ok`` when it parsed every requested layer the frame has, or the
*first* problem it met. The index is the frame's slot in the outcome counter array, so
the order below is part of the program's ABI (the manifest carries the names).

Which outcomes are possible depends on the layers the compiler asks the parser for
(:func:`decoders_for`): the parser stops where the request stops, and the outcome says
how far it went. If no app needs L4, a TCP frame is ``ok``; if some app needs UDP but
none needs TCP, a TCP frame is still ``ok`` (TCP is a protocol xdpmon knows, it just
was not requested), whereas GRE is ``other_l4`` (xdpmon never decodes it). Likewise a
non-first fragment is ``fragment`` only when some L4 decoder was requested.

runtime/engines/reference/decoder.py implements the same rules in Python; the kernel tests
check both agree on every frame of the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    index: int
    name: str
    doc: str
    error: bool  # a malformed or cut-off frame (False: a normal, merely counted case)

    @property
    def c_name(self) -> str:
        """The C macro the parser template uses, e.g. ``XM_OUT_TRUNCATED_TCP``."""
        return "XM_OUT_" + self.name.upper()


_OUTCOMES: list[tuple[str, bool, str]] = [
    ("ok", False, "parsed every requested layer present in the frame"),
    ("truncated_eth", True, "frame shorter than the 14-byte Ethernet header"),
    ("truncated_vlan", True, "a VLAN tag (0x8100/0x88a8) is announced but its 4 bytes are cut off"),
    ("vlan_too_deep", False, "a third VLAN tag follows two parsed ones: it is not parsed (eth.type is its TPID)"),
    ("non_ip", False, "EtherType after the VLAN tags is neither IPv4 nor IPv6 (e.g. ARP, LLDP, MPLS)"),
    ("truncated_ipv4", True, "IPv4 header cut off: fewer than 20 bytes, or fewer than IHL*4"),
    ("bad_ipv4_header", True, "IPv4 header with version != 4 or IHL < 5"),
    ("truncated_ipv6", True, "IPv6 fixed header cut off (fewer than 40 bytes)"),
    ("bad_ipv6_header", True, "IPv6 header with version != 6"),
    ("truncated_ipv6_ext", True, "an IPv6 extension header runs past the end of the frame"),
    ("ipv6_ext_limit", False, "more IPv6 extension headers than the parser's fixed bound (ipv6_ext_max, default 6)"),
    ("fragment", False, "non-first IP fragment (offset != 0): it carries no L4 header"),
    ("other_l4", False, "IP protocol xdpmon does not decode (not TCP, UDP, ICMP over IPv4, ICMPv6 over IPv6)"),
    ("truncated_tcp", True, "TCP header cut off: fewer than 20 bytes, or fewer than data offset*4"),
    ("bad_tcp_header", True, "TCP data offset < 5"),
    ("truncated_udp", True, "UDP header cut off (fewer than 8 bytes)"),
    ("truncated_icmp", True, "ICMP header cut off (fewer than 8 bytes, as struct icmphdr)"),
    ("truncated_icmp6", True, "ICMPv6 header cut off (fewer than 8 bytes, as struct icmp6hdr)"),
    ("truncated_dns", True, "UDP port 53 but fewer than 12 bytes of DNS header after the UDP header"),
]

OUTCOMES: tuple[Outcome, ...] = tuple(
    Outcome(i, name, doc, error) for i, (name, error, doc) in enumerate(_OUTCOMES)
)
BY_NAME: dict[str, Outcome] = {o.name: o for o in OUTCOMES}
NAMES: tuple[str, ...] = tuple(o.name for o in OUTCOMES)
COUNT = len(OUTCOMES)

OK = BY_NAME["ok"].index


def index(name: str) -> int:
    return BY_NAME[name].index


def name(idx: int) -> str:
    return OUTCOMES[idx].name


# ---------------------------------------------------------------------------------------
# Which decoders a layer request renders: the ONE statement of the layer closure.
#
# The request is the set of dsl.fields.LAYERS names that any predicate, key, argument or
# event of the program reads (compiler/passes/layers.py). Each asks for the decoders
# below; Ethernet (and the VLAN tag walk, needed to find eth.type) is always parsed.
# "ip" asks for both families and so do tcp, udp, l4 and dns (a TCP header can follow
# either); "l4" asks for TCP and UDP (you must try both to know); dns needs UDP; ICMP is
# decoded over IPv4 only and ICMPv6 over IPv6 only. The parser template (parse.c.j2)
# gets the result as plain flags (:class:`ParserFlags`), the Python parsers
# (runtime/engines/reference/) call decoders_for() themselves.
#
# dsl.fields.IMPLIES is another relation: which layers a packet surely HAS when it has
# one (tcp -> l4 -> ip), used by semantic analysis; it says nothing about decoding.
# ---------------------------------------------------------------------------------------

DECODERS = ("eth", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6", "dns")

_IP = ("ipv4", "ipv6")
DECODES: dict[str, tuple[str, ...]] = {
    "eth": (),
    "vlan": (),
    "pkt": (),
    "ipv4": ("ipv4",),
    "ipv6": ("ipv6",),
    "ip": _IP,
    "tcp": _IP + ("tcp",),
    "udp": _IP + ("udp",),
    "l4": _IP + ("tcp", "udp"),
    "icmp": ("ipv4", "icmp"),
    "icmp6": ("ipv6", "icmp6"),
    "dns": _IP + ("udp", "dns"),
}


def decoders_for(layers) -> frozenset[str]:
    """The protocol decoders the parser renders for a request of ``layers``."""
    from dsl.fields import LAYERS

    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layer(s) {sorted(unknown)} (known: {', '.join(LAYERS)})")
    d = {"eth"}
    for layer in layers:
        d.update(DECODES[layer])
    return frozenset(d)


@dataclass(frozen=True)
class ParserFlags:
    """What parse.c.j2 emits: one flag per decoder, and whether any L3 / L4 one is."""
    ipv4: bool
    ipv6: bool
    tcp: bool
    udp: bool
    icmp: bool
    icmp6: bool
    dns: bool

    @property
    def l3(self) -> bool:
        return self.ipv4 or self.ipv6

    @property
    def l4(self) -> bool:
        return self.tcp or self.udp or self.icmp or self.icmp6

    @classmethod
    def of(cls, decoders) -> "ParserFlags":
        d = set(decoders)
        return cls(**{name: name in d for name in DECODERS if name != "eth"})


def wants_l3(decoders) -> bool:
    return ParserFlags.of(decoders).l3


def wants_l4(decoders) -> bool:
    return ParserFlags.of(decoders).l4


def possible_outcomes(layers) -> tuple[Outcome, ...]:
    """The outcomes a parser rendered for ``layers`` can return (in index order)."""
    d = decoders_for(layers)
    f = ParserFlags.of(d)
    names = {"ok", "truncated_eth", "truncated_vlan", "vlan_too_deep"}
    if f.l3:
        names.add("non_ip")
    if "ipv4" in d:
        names |= {"truncated_ipv4", "bad_ipv4_header"}
    if "ipv6" in d:
        names |= {"truncated_ipv6", "bad_ipv6_header", "truncated_ipv6_ext", "ipv6_ext_limit"}
    if f.l4 and f.l3:
        names |= {"fragment", "other_l4"}
    for dec in ("tcp", "udp", "dns"):
        if dec in d and f.l3:
            names.add(f"truncated_{dec}")
    if "tcp" in d and f.l3:
        names.add("bad_tcp_header")
    if "icmp" in d and "ipv4" in d:      # ICMP only over IPv4
        names.add("truncated_icmp")
    if "icmp6" in d and "ipv6" in d:     # ICMPv6 only over IPv6
        names.add("truncated_icmp6")
    return tuple(o for o in OUTCOMES if o.name in names)
