"""Writes the small captures of tests/captures/, byte for byte the same every time.

    python tests/captures/make_captures.py [DIR]      # default: this folder

Each capture is one case of how captures are read (tests/test_captures.py checks
that the checked-in files equal what this writes, then what replaying them gives):

- ``interfaces.pcapng``: four interfaces in one section: Ethernet in microseconds
  (the default resolution), Ethernet in nanoseconds, Linux cooked v2 (SLL2) in
  nanoseconds, and raw IP (whose frames are not replayed);
- ``sections.pcapng``: two sections, little- then big-endian, each with its own
  interface numbering: a microsecond Ethernet interface with an Enhanced and a
  Simple Packet Block, then a nanosecond SLL interface and an Ethernet interface
  in 2^-20 s units with an offset of T0 seconds;
- ``sll.pcap``: classic pcap, big-endian, Linux cooked (SLL): a broadcast frame, a
  VLAN-tagged one (libpcap puts the tag after the cooked header) and an 802.2 LLC
  frame (no EtherType: not replayed);
- ``sll2.pcap``: classic pcap in nanoseconds, Linux cooked v2 (SLL2);
- ``ns_boundary.pcapng``: nanosecond timestamps around a one-second boundary
  (a float cannot hold them: 1 ns before the boundary rounds onto it);
- ``snaplen.pcap``: frames of 64 to 9000 bytes cut at a snap length of 96;
- ``backwards.pcap``: DNS queries and a port-scan probe from one source with
  time going back 6 s across a 10 s window boundary and forward again;
- ``oversize.pcap``: an 80,000-byte (GRO) frame, a normal one and a 10-byte runt.

Frames are built with scapy with every address explicit, in the benchmarking
range 198.18.0.0/15.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from scapy.all import DNS, DNSQR, DNSRR, Dot1Q, Ether, IP, TCP, UDP

S = 1_000_000_000
T0 = 1_700_000_000                    # seconds: the captures' epoch
T0_NS = T0 * S
MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
HERE = Path(__file__).resolve().parent

LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 1, 101, 113, 276


# ---- frames ---------------------------------------------------------------------------

def eth(payload, dst=MAC_B, src=MAC_A):
    return Ether(dst=dst, src=src) / payload


def udp(src: str, dst: str = "198.19.0.1", sport: int = 4000, dport: int = 9, pad: int = 0) -> bytes:
    return bytes(eth(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"u" * pad)))


def tcp_syn(src: str, dst: str, dport: int, pad: int = 0) -> bytes:
    return bytes(eth(IP(src=src, dst=dst) / TCP(sport=40000, dport=dport, flags="S") / (b"t" * pad)))


def sll(frame: bytes, pkttype: int = 0, addr: bytes = bytes.fromhex("02000000000a")) -> bytes:
    """The Ethernet frame as an SLL capture has it: cooked header, then what follows the MACs."""
    return struct.pack(">HHH8sH", pkttype, 1, len(addr), addr, int.from_bytes(frame[12:14], "big")) + frame[14:]


def sll2(frame: bytes, pkttype: int = 0, addr: bytes = bytes.fromhex("02000000000a"), ifindex: int = 3) -> bytes:
    return struct.pack(">HHIHBB8s", int.from_bytes(frame[12:14], "big"), 0, ifindex, 1, pkttype, len(addr),
                       addr) + frame[14:]


# ---- writers ----------------------------------------------------------------------------

def pcap(linktype: int, records, *, nano: bool = False, order: str = "<", snaplen: int = 262144) -> bytes:
    """records: (ts_ns, captured bytes, wire length or None)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data, wire in records:
        sec, ns = divmod(ts, S)
        out.append(struct.pack(order + "IIII", sec, ns if nano else ns // 1000, len(data),
                               len(data) if wire is None else wire) + data)
    return b"".join(out)


def _pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def _block(order: str, btype: int, body: bytes) -> bytes:
    body = _pad4(body)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _options(order: str, opts) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack(order + "HH", code, len(v)) + _pad4(v) for code, v in opts)
    return out + struct.pack(order + "HH", 0, 0)


def shb(order: str) -> bytes:
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, tsresol: int | None = None, tsoffset: int | None = None,
        snaplen: int = 262144) -> bytes:
    opts = []
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(order + "q", tsoffset)))
    return _block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + _options(order, opts))


def epb(order: str, if_id: int, units: int, data: bytes, wire: int | None = None) -> bytes:
    """An Enhanced Packet Block at ``units`` of its interface's resolution."""
    head = struct.pack(order + "IIIII", if_id, units >> 32, units & 0xFFFFFFFF, len(data),
                       len(data) if wire is None else wire)
    return _block(order, 6, head + _pad4(data))


def spb(order: str, data: bytes) -> bytes:
    return _block(order, 3, struct.pack(order + "I", len(data)) + data)


# ---- the captures -----------------------------------------------------------------------

def interfaces() -> bytes:
    o = "<"
    raw_ip = bytes(IP(src="198.18.0.9", dst="198.19.0.1") / UDP(sport=1, dport=2))
    return b"".join([
        shb(o),
        idb(o, LINKTYPE_ETHERNET),                  # 0: microseconds (no if_tsresol)
        idb(o, LINKTYPE_ETHERNET, tsresol=9),       # 1: nanoseconds
        idb(o, LINKTYPE_SLL2, tsresol=9),           # 2: Linux cooked v2, nanoseconds
        idb(o, LINKTYPE_RAW),                       # 3: raw IP: not replayed
        epb(o, 0, T0 * 1_000_000 + 1_000_001, udp("198.18.0.1")),           # T0 + 1.000001 s
        epb(o, 1, T0_NS + 1_000_001_001, udp("198.18.0.2", pad=10)),       # T0 + 1.000001001 s
        epb(o, 2, T0_NS + 2_500_000_007, sll2(udp("198.18.0.3", pad=20))),  # T0 + 2.500000007 s
        epb(o, 3, T0 * 1_000_000 + 3_000_000, raw_ip),                      # T0 + 3 s
        epb(o, 0, T0 * 1_000_000 + 4_000_002, udp("198.18.0.1")),           # T0 + 4.000002 s
        epb(o, 1, T0_NS + 4_000_002_003, udp("198.18.0.2", pad=10)),       # T0 + 4.000002003 s
    ])


def sections() -> bytes:
    le, be = "<", ">"
    return b"".join([
        shb(le),
        idb(le, LINKTYPE_ETHERNET),                                         # section 0, interface 0: us
        epb(le, 0, T0 * 1_000_000 + 1_000_000, udp("198.18.1.1")),          # T0 + 1 s
        spb(le, udp("198.18.1.2")),                                         # no time: T0 + 1 s kept
        shb(be),
        idb(be, LINKTYPE_SLL, tsresol=9),                                   # section 1, interface 0: SLL, ns
        idb(be, LINKTYPE_ETHERNET, tsresol=0x80 | 20, tsoffset=T0),         # interface 1: 2^-20 s from T0
        epb(be, 0, T0_NS + 2_000_000_005, sll(udp("198.18.2.1"))),          # T0 + 2.000000005 s
        epb(be, 1, 3 * (1 << 20) + 1, udp("198.18.2.2")),                   # T0 + 3 s + 1/2^20 s (953.67 ns)
    ])


def sll_pcap() -> bytes:
    llc = struct.pack(">HHH8sH", 0, 1, 6, bytes.fromhex("02000000000a"), 0x0004) + b"\x42\x42\x03" + bytes(40)
    tagged = bytes(eth(Dot1Q(vlan=77) / IP(src="198.18.3.2", dst="198.19.0.1") / UDP(sport=5, dport=6)))
    return pcap(LINKTYPE_SLL, [
        (T0_NS + 1_000_000, sll(udp("198.18.3.1", dst="198.19.255.255"), pkttype=1), None),   # broadcast
        (T0_NS + 2_000_000, sll(tagged), None),
        (T0_NS + 3_000_000, llc, None),
    ], order=">")


def sll2_pcap() -> bytes:
    return pcap(LINKTYPE_SLL2, [(T0_NS + 4_000_007, sll2(tcp_syn("198.18.4.1", "198.19.0.2", 443), pkttype=4), None)],
                nano=True)


def ns_boundary() -> bytes:
    o = "<"
    return b"".join([shb(o), idb(o, LINKTYPE_ETHERNET, tsresol=9)] + [
        epb(o, 0, T0_NS + S + d, udp("198.18.0.7")) for d in (-2, -1, 0, 1)
    ])


SNAP = 96
SNAP_SIZES = (64, 128, 300, 1500, 9000)


def snaplen() -> bytes:
    recs = []
    for i, size in enumerate(SNAP_SIZES):
        f = udp("198.18.6.1", pad=size - 42) if i % 2 == 0 else tcp_syn("198.18.6.1", "198.19.0.1", 80, pad=size - 54)
        assert len(f) == size
        recs.append((T0_NS + i * 1000, f[:SNAP], size))
    return pcap(LINKTYPE_ETHERNET, recs, snaplen=SNAP)


SCANNER = "198.18.5.5"
RESOLVER = "198.19.0.53"


def dns_query(t: int, qid: int) -> tuple:
    f = bytes(eth(IP(src=SCANNER, dst=RESOLVER) / UDP(sport=33000, dport=53) / DNS(id=qid, rd=1, qd=DNSQR(qname="a.example."))))
    return (t, f, None)


def backwards() -> bytes:
    resp = bytes(eth(IP(src=RESOLVER, dst=SCANNER) / UDP(sport=53, dport=33000) /
                     DNS(id=3, qr=1, qd=DNSQR(qname="a.example."), an=DNSRR(rrname="a.example.", rdata="198.19.1.1"))))
    return pcap(LINKTYPE_ETHERNET, [
        dns_query(T0_NS + 25 * S, 1),                                   # window [20 s, 30 s)
        (T0_NS + 19 * S, tcp_syn(SCANNER, "198.19.0.10", 22), None),    # 6 s back: window [10 s, 20 s)
        dns_query(T0_NS + 26 * S, 2),                                   # forward again
        (T0_NS + 26 * S + 500, resp, None),
    ], nano=True)


def oversize() -> bytes:
    gro = bytes(eth(IP(src="198.18.7.1", dst="198.19.0.1", len=0) / TCP(sport=1, dport=2, flags="A") / (b"g" * (80_000 - 54))))
    assert len(gro) == 80_000
    return pcap(LINKTYPE_ETHERNET, [
        (T0_NS + 10_001, udp("198.18.7.1"), None),
        (T0_NS + 10_002, gro, None),
        (T0_NS + 10_003, b"\x01" * 10, None),
    ], nano=True)


CAPTURES = {
    "interfaces.pcapng": interfaces,
    "sections.pcapng": sections,
    "sll.pcap": sll_pcap,
    "sll2.pcap": sll2_pcap,
    "ns_boundary.pcapng": ns_boundary,
    "snaplen.pcap": snaplen,
    "backwards.pcap": backwards,
    "oversize.pcap": oversize,
}


def build_all() -> dict[str, bytes]:
    return {name: make() for name, make in CAPTURES.items()}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, data in build_all().items():
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
