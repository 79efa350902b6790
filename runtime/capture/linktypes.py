"""Link types: which a capture's frames may have, and how each becomes the
Ethernet frame an XDP program sees.

An XDP program on an Ethernet interface sees Ethernet II frames. A capture
taken on Linux's "any" pseudo-interface (``tcpdump -i any``) has Linux cooked
headers (SLL, or SLL2 since libpcap 1.10) instead: they carry the EtherType of
what follows, the packet type and the sender's link-layer address. Such a frame
is replayed as the Ethernet frame that carried it: destination broadcast for a
broadcast packet, else zero; source the SLL address when it is 6 bytes (an
Ethernet interface), else zero; then the EtherType and the rest, untouched (a
VLAN tag libpcap put back after the SLL header stays in place). Its wire length
changes by the same number of bytes as its header. A cooked frame whose
protocol is not an EtherType (802.2 LLC, CAN, netlink, ...) has no Ethernet II
form and is refused (``sll_protocol``), as is every frame of an interface of
another link type (``link_type``).
"""

from __future__ import annotations

import struct
from typing import Callable

ETHERNET = 1
LINUX_SLL = 113
LINUX_SLL2 = 276

NAMES = {0: "BSD loopback (NULL)", 1: "Ethernet", 101: "raw IP", 105: "IEEE 802.11",
         113: "Linux cooked (SLL)", 127: "802.11 radiotap", 228: "raw IPv4", 229: "raw IPv6",
         276: "Linux cooked v2 (SLL2)"}

# Why a frame of a capture is not replayed (the engines count them as refused).
REFUSALS = {
    "link_type": "of an interface whose link type is neither Ethernet nor Linux cooked (SLL, SLL2)",
    "sll_protocol": "Linux cooked frames whose protocol is not an EtherType (802.2 LLC, CAN, netlink, ...)",
}

ETH_HLEN = 14
ETH_P_MIN = 0x0600               # EtherTypes start here; below is an 802.3 length or a Linux pseudo-protocol
PACKET_BROADCAST = 1             # linux/if_packet.h packet types
_BROADCAST = b"\xff" * 6
_ZERO = bytes(6)
_SLL = struct.Struct(">HHH8sH")          # pkttype, hatype, halen, addr, protocol
_SLL2 = struct.Struct(">HHIHBB8s")       # protocol, reserved, ifindex, hatype, pkttype, halen, addr

# (data, wire_len) -> (Ethernet frame, its wire length, None) or (None, 0, refusal reason)
Converter = Callable[[bytes, int], tuple]


def name(linktype: int) -> str:
    return NAMES.get(linktype, "unknown")


def _sll(data: bytes, wire_len: int) -> tuple:
    if len(data) < _SLL.size:
        return None, 0, "short"
    pkttype, _hatype, halen, addr, proto = _SLL.unpack_from(data)
    if proto < ETH_P_MIN:
        return None, 0, "sll_protocol"
    dst = _BROADCAST if pkttype == PACKET_BROADCAST else _ZERO
    src = addr[:6] if halen == 6 else _ZERO
    return dst + src + data[_SLL.size - 2:], wire_len - (_SLL.size - ETH_HLEN), None


def _sll2(data: bytes, wire_len: int) -> tuple:
    if len(data) < _SLL2.size:
        return None, 0, "short"
    proto, _res, _ifindex, _hatype, pkttype, halen, addr = _SLL2.unpack_from(data)
    if proto < ETH_P_MIN:
        return None, 0, "sll_protocol"
    dst = _BROADCAST if pkttype == PACKET_BROADCAST else _ZERO
    src = addr[:6] if halen == 6 else _ZERO
    return dst + src + data[0:2] + data[_SLL2.size:], wire_len - (_SLL2.size - ETH_HLEN), None


CONVERTERS: dict[int, Converter] = {LINUX_SLL: _sll, LINUX_SLL2: _sll2}


def supported(linktype: int) -> bool:
    return linktype == ETHERNET or linktype in CONVERTERS
