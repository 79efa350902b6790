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

runtime/reference/decoder.py implements the same rules in Python; the kernel tests
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
# Which decoders a layer request renders. The template (parse.c.j2) encodes exactly these
# rules with membership tests; this is their single statement in Python, used by the
# reference decoder and by anyone who needs to know what the parser will do.
#
# The request is a set of dsl.fields.LAYERS names, closed under dsl.fields.IMPLIES
# (e.g. {"tcp", "l4", "ip"}). "ip" asks for both families, "l4" for TCP and UDP, "dns"
# for UDP. Ethernet (and the VLAN tag walk, needed to find eth.type) is always parsed.
# Because IMPLIES is upward (tcp -> l4 -> ip), a closed request for any IP-level layer
# contains "ip" and so parses both families, and one for TCP or UDP contains "l4" and
# so parses both: that is what "ip"/"l4" mean (you must try both to know), and the extra
# decoder costs a few instructions only on the packets that have that header.
# ---------------------------------------------------------------------------------------

DECODERS = ("eth", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6", "dns")


def close_layers(layers) -> frozenset[str]:
    """``layers`` plus every layer they imply (dsl.fields.IMPLIES), plus eth and pkt.

    This is the set the compiler must pass to parse.c.j2 as ``layers``.
    """
    from dsl.fields import LAYERS, implied_layers

    out = {"eth", "pkt"}
    for layer in layers:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r} (known: {', '.join(LAYERS)})")
        out |= implied_layers(layer)
    return frozenset(out)


def decoders_for(layers) -> frozenset[str]:
    """The protocol decoders parse.c.j2 renders for ``layers`` (taken as given).

    The compiler passes a closed set (:func:`close_layers`); these membership rules are
    the template's own, so the reference decoder given the same set, closed or not,
    behaves like the rendered parser.
    """
    from dsl.fields import LAYERS

    L = set(layers)
    unknown = L - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layer(s) {sorted(unknown)} (known: {', '.join(LAYERS)})")
    d = {"eth"}
    if L & {"ipv4", "ip"}:
        d.add("ipv4")
    if L & {"ipv6", "ip"}:
        d.add("ipv6")
    if L & {"tcp", "l4"}:
        d.add("tcp")
    if L & {"udp", "l4", "dns"}:
        d.add("udp")
    if "icmp" in L:
        d.add("icmp")
    if "icmp6" in L:
        d.add("icmp6")
    if "dns" in L:
        d.add("dns")
    return frozenset(d)


def wants_l3(decoders) -> bool:
    return bool(set(decoders) & {"ipv4", "ipv6"})


def wants_l4(decoders) -> bool:
    return bool(set(decoders) & {"tcp", "udp", "icmp", "icmp6"})


def possible_outcomes(layers) -> tuple[Outcome, ...]:
    """The outcomes a parser rendered for ``layers`` can return (in index order)."""
    d = decoders_for(layers)
    names = {"ok", "truncated_eth", "truncated_vlan", "vlan_too_deep"}
    if wants_l3(d):
        names.add("non_ip")
    if "ipv4" in d:
        names |= {"truncated_ipv4", "bad_ipv4_header"}
    if "ipv6" in d:
        names |= {"truncated_ipv6", "bad_ipv6_header", "truncated_ipv6_ext", "ipv6_ext_limit"}
    if wants_l4(d) and wants_l3(d):
        names |= {"fragment", "other_l4"}
    for dec in ("tcp", "udp", "dns"):
        if dec in d and wants_l3(d):
            names.add(f"truncated_{dec}")
    if "tcp" in d and wants_l3(d):
        names.add("bad_tcp_header")
    if "icmp" in d and "ipv4" in d:      # ICMP only over IPv4
        names.add("truncated_icmp")
    if "icmp6" in d and "ipv6" in d:     # ICMPv6 only over IPv6
        names.add("truncated_icmp6")
    return tuple(o for o in OUTCOMES if o.name in names)


def c_defines() -> str:
    """``#define XM_OUT_<NAME> <index>`` lines (the template hard-codes the same)."""
    return "\n".join(f"#define {o.c_name} {o.index}" for o in OUTCOMES) + f"\n#define XM_OUT_COUNT {COUNT}\n"
