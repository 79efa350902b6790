"""The generator's template frames: Ethernet + IPv4 + UDP or TCP SYN, exact checksums.

Only addresses in 198.18.0.0/15 (RFC 2544's benchmarking range) are accepted, for the
sources the generator cycles through as well as for the destination: a frame of this
module never names a host outside the range. ``Template`` carries what the
generator's XDP program needs to rewrite the source per frame (the offsets and the
template's checksums, see livegen.c).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

BENCH_NET = ipaddress.ip_network("198.18.0.0/15")
ETH_P_IP = 0x0800
ETH_LEN, IP_LEN, UDP_LEN, TCP_LEN = 14, 20, 8, 20
MIN_FRAME = 60                    # Ethernet minimum without the FCS
PROTOS = ("udp", "tcp-syn")


@dataclass(frozen=True)
class Template:
    """A frame and what the generator's program rewrites in it."""
    frame: bytes
    proto: str                    # "udp" or "tcp-syn"
    src: str                      # the first source address
    dst: str
    sport: int                    # the first source port
    dport: int
    ip_check: int                 # the IPv4 header checksum, as the two bytes in the frame read (little end)
    l4_check: int                 # the TCP checksum likewise (0 for UDP: no checksum)
    l4_check_off: int             # offset of the TCP checksum; 0 for UDP


def _csum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071), as a 16-bit big-endian value."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def check_range(first: str, count: int, what: str) -> ipaddress.IPv4Address:
    """``count`` addresses from ``first`` on, all in 198.18.0.0/15, or ValueError."""
    try:
        a = ipaddress.IPv4Address(first)
    except ValueError:
        raise ValueError(f"{what} {first!r} is not an IPv4 address") from None
    if count < 1:
        raise ValueError(f"{what}: at least one address, not {count}")
    last = int(a) + count - 1
    if a not in BENCH_NET or last > int(BENCH_NET.broadcast_address):
        raise ValueError(f"{what} {a} .. {ipaddress.IPv4Address(min(last, 2**32 - 1))} is not inside "
                         f"{BENCH_NET} (the generator sends to and from that range only)")
    return a


def build(proto: str, src: str, dst: str, sport: int = 1024, dport: int = 9, size: int = MIN_FRAME,
          src_mac: str = "02:00:00:00:00:02", dst_mac: str = "02:00:00:00:00:01", ttl: int = 64) -> Template:
    """A template frame of ``size`` bytes (without FCS): UDP with a payload of zeros,
    or a TCP SYN without payload (the rest of ``size`` is Ethernet padding)."""
    if proto not in PROTOS:
        raise ValueError(f"unknown protocol {proto!r} (one of {', '.join(PROTOS)})")
    s, d = check_range(src, 1, "source"), check_range(dst, 1, "destination")
    for name, port in (("source port", sport), ("destination port", dport)):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"{name} {port} is not 0..65535")
    l4_len = UDP_LEN if proto == "udp" else TCP_LEN
    head = ETH_LEN + IP_LEN + l4_len
    if not max(head, MIN_FRAME) <= size <= 1514:
        raise ValueError(f"frame size {size} is not {max(head, MIN_FRAME)}..1514 bytes")
    # UDP carries the rest as payload; a SYN carries none: the rest is Ethernet padding
    payload = bytes(size - head) if proto == "udp" else b""
    padding = bytes(size - head - len(payload))
    ip_total = IP_LEN + l4_len + len(payload)
    ipproto = 17 if proto == "udp" else 6
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_total, 0, 0x4000, ttl, ipproto, 0, s.packed, d.packed))
    struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
    if proto == "udp":
        l4 = struct.pack("!HHHH", sport, dport, UDP_LEN + len(payload), 0) + payload
        l4_off = 0
    else:
        tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)) + payload
        pseudo = struct.pack("!4s4sBBH", s.packed, d.packed, 0, 6, len(tcp))
        struct.pack_into("!H", tcp, 16, _csum(pseudo + bytes(tcp)))
        l4 = bytes(tcp)
        l4_off = ETH_LEN + IP_LEN + 16
    frame = _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ETH_P_IP) + bytes(ip) + l4 + padding
    assert len(frame) == size
    ip_check = struct.unpack_from("<H", frame, ETH_LEN + 10)[0]
    l4_check = struct.unpack_from("<H", frame, l4_off)[0] if l4_off else 0
    return Template(frame, proto, str(s), str(d), sport, dport, ip_check, l4_check, l4_off)


def check_flows(t: Template, src_count: int, sport_count: int) -> None:
    """``src_count`` sources from the template's, inside the range, and ``sport_count``
    ports from its port below 65536: the flows a generator cycles through."""
    check_range(t.src, src_count, "sources")
    if not 1 <= sport_count <= 0xFFFF - t.sport + 1:
        raise ValueError(f"sport_count {sport_count}: the ports {t.sport}.. must stay below 65536")


def nth_flow(t: Template, n: int, src_count: int, sport_count: int) -> tuple[int, int]:
    """(source address as an int, source port) of frame ``n``: livegen.c's rule."""
    return (int(ipaddress.IPv4Address(t.src)) + n % src_count,
            t.sport + (n // src_count) % sport_count)


def rewrite(t: Template, src: int, sport: int) -> bytes:
    """The template with source ``src`` (an int) and port ``sport``, checksums exact: the
    frame the generator's XDP program makes of it (livegen.c), computed from scratch."""
    f = bytearray(t.frame)
    struct.pack_into("!I", f, ETH_LEN + 12, src)
    struct.pack_into("!H", f, ETH_LEN + IP_LEN, sport)
    struct.pack_into("!H", f, ETH_LEN + 10, 0)
    struct.pack_into("!H", f, ETH_LEN + 10, _csum(bytes(f[ETH_LEN:ETH_LEN + IP_LEN])))
    if t.l4_check_off:
        seg = ETH_LEN + IP_LEN
        struct.pack_into("!H", f, t.l4_check_off, 0)
        pseudo = bytes(f[ETH_LEN + 12:ETH_LEN + 20]) + struct.pack("!BBH", 0, 6, TCP_LEN)
        struct.pack_into("!H", f, t.l4_check_off, _csum(pseudo + bytes(f[seg:seg + TCP_LEN])))
    return bytes(f)
