"""Frames for the four reference apps: the mixed set the equality tests run through
every configuration (tests/test_handwritten.py, tests/test_dispatcher.py) and the IPv4
frames the benchmark times (benchmarks/bench_handwritten.py). Addresses are from the
benchmarking ranges 198.18.0.0/15 and 2001:2::/48 only.
"""

from __future__ import annotations

import time

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
VICTIM = "198.19.0.80"
WINDOW_NS = 1_000_000_000


def _eth():
    from scapy.all import Ether
    return Ether(**MAC)


def syn(src: str, dst: str, sport: int = 40000, dport: int = 80) -> bytes:
    from scapy.all import IP, TCP
    return bytes(_eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S"))


def dns(src: str, dst: str, sport: int, dport: int, qr: int = 0, rcode: int = 0) -> bytes:
    from scapy.all import DNS, DNSQR, IP, UDP
    return bytes(_eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport)
                 / DNS(id=7, qr=qr, rd=1, rcode=rcode, qd=DNSQR(qname="www.example")))


def bench_frames() -> dict[str, bytes]:
    """The IPv4 frames the benchmark times, one per kind of packet."""
    from scapy.all import IP, TCP, UDP, Raw
    e = _eth()
    return {
        "tcp_syn": syn("198.18.1.1", VICTIM, 40001, 80),
        "tcp_established": bytes(e / IP(src="198.18.1.2", dst="198.19.0.10")
                                 / TCP(sport=40002, dport=443, flags="PA", seq=1000, ack=2000) / Raw(b"d" * 100)),
        "dns_query": dns("198.18.1.3", "198.19.0.53", 40003, 53),
        "dns_response": dns("198.19.0.53", "198.18.1.3", 53, 40003, qr=1, rcode=3),
        "udp_other": bytes(e / IP(src="198.18.1.4", dst="198.19.0.20") / UDP(sport=40004, dport=5000)
                           / Raw(b"u" * 64)),
    }


def mixed_frames() -> list[tuple[str, bytes, int]]:
    """(what, frame, repeats) in order: SYNs from 40 sources to three destinations (the
    flow count crosses a low threshold), a SYN flood on VICTIM (1,200 repeats: over a
    per_dst of 100 the rule fires 1,100 times in well under a millisecond, so 1,000 are
    sent and 100 rate-limited), SYN/ACKs, established data, DNS queries and responses of
    rcodes 0, 2, 3 and 5 (one without a whole DNS header), other UDP, IPv6 (with and
    without extension headers, a non-first fragment), VLAN and QinQ, three tags (not
    IP), ARP, ICMP, an IPv4 non-first fragment, IPv4 options, a cut TCP header, and a
    frame longer than the kernel's linear test-run buffer (pkt.len counts it whole)."""
    from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, IPOption_RR, IPv6, IPv6ExtHdrFragment,
                           IPv6ExtHdrHopByHop, Raw)
    e = _eth()
    out: list[tuple[str, bytes, int]] = []
    dsts = ["198.19.0.1", "198.19.0.2", VICTIM]
    for i in range(40):
        out.append((f"syn {i}", syn(f"198.18.0.{i + 1}", dsts[i % 3], 30000 + i, 80), 1))
    out.append(("syn flood", syn("198.18.9.9", VICTIM, 31000, 80), 1200))
    out.append(("syn/ack", bytes(e / IP(src=VICTIM, dst="198.18.0.1") / TCP(sport=80, dport=30000, flags="SA")), 3))
    out.append(("established", bytes(e / IP(src="198.18.0.1", dst=VICTIM) / TCP(sport=30000, dport=80, flags="PA")
                                     / Raw(b"x" * 200)), 5))
    out.append(("fin", bytes(e / IP(src="198.18.0.2", dst="198.19.0.2") / TCP(sport=30001, dport=80, flags="FA")), 1))
    out.append(("dns query", dns("198.18.2.1", "198.19.0.53", 5353, 53), 4))
    out.append(("dns query 2", dns("198.18.2.2", "198.19.0.53", 5354, 53), 1))
    for rcode, n in ((0, 3), (2, 1), (3, 2), (5, 1)):
        out.append((f"dns response rcode {rcode}", dns("198.19.0.53", "198.18.2.1", 53, 5353, qr=1, rcode=rcode), n))
    out.append(("udp/53 without a whole dns header", bytes(e / IP(src="198.18.2.3", dst="198.19.0.53")
                                                          / UDP(sport=5355, dport=53) / Raw(b"abc")), 2))
    out.append(("other udp", bytes(e / IP(src="198.18.3.1", dst="198.19.0.20") / UDP(sport=1000, dport=2000)
                                   / Raw(b"u" * 30)), 3))
    out.append(("ipv6 syn", bytes(e / IPv6(src="2001:2::1", dst="2001:2::80") / TCP(sport=4000, dport=80, flags="S")), 2))
    out.append(("ipv6 dns", bytes(e / IPv6(src="2001:2::1", dst="2001:2::53") / UDP(sport=4001, dport=53)
                                  / Raw(bytes(12))), 1))
    out.append(("ipv6 hop-by-hop + udp", bytes(e / IPv6(src="2001:2::2", dst="2001:2::20") / IPv6ExtHdrHopByHop()
                                               / UDP(sport=4002, dport=2000) / Raw(b"h" * 8)), 1))
    out.append(("ipv6 non-first fragment", bytes(e / IPv6(src="2001:2::3", dst="2001:2::20")
                                                 / IPv6ExtHdrFragment(offset=100, nh=17) / Raw(b"f" * 16)), 1))
    out.append(("vlan syn", bytes(e / Dot1Q(vlan=10) / IP(src="198.18.4.1", dst="198.19.0.1")
                                  / TCP(sport=5000, dport=22, flags="S")), 2))
    out.append(("qinq dns", bytes(e / Dot1AD(vlan=20) / Dot1Q(vlan=30) / IP(src="198.18.4.2", dst="198.19.0.53")
                                  / UDP(sport=5001, dport=53) / Raw(bytes(12))), 1))
    out.append(("three vlan tags", bytes(e / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3)
                                         / IP(src="198.18.4.3", dst="198.19.0.1") / UDP(sport=1, dport=2)), 1))
    out.append(("arp", bytes(e / ARP(psrc="198.18.5.1", pdst="198.18.5.2")), 1))
    out.append(("icmp", bytes(e / IP(src="198.18.5.3", dst="198.19.0.1") / ICMP()), 2))
    out.append(("ipv4 non-first fragment", bytes(e / IP(src="198.18.5.4", dst="198.19.0.1", frag=10, proto=6)
                                                 / Raw(b"f" * 40)), 1))
    out.append(("ipv4 options syn", bytes(e / IP(src="198.18.5.5", dst="198.19.0.2", options=[IPOption_RR()])
                                          / TCP(sport=5002, dport=80, flags="S")), 1))
    out.append(("cut tcp header", bytes(e / IP(src="198.18.5.6", dst="198.19.0.2", proto=6) / Raw(b"\x01\x02" * 5)), 1))
    out.append(("4000-byte udp", bytes(e / IP(src="198.18.5.7", dst="198.19.0.20") / UDP(sport=6000, dport=6001)
                                       / Raw(b"j" * 3958)), 1))
    return out


def wait_for_window_start(margin_ns: int = 10_000_000) -> int:
    """Sleep until ``margin_ns`` into the next 1 s window of the kernel's clock; returns
    that window's number. Frames run right after share one window (a run of the mixed set
    takes well under a second). The clock is the coarse one (a tick, 4 ms at HZ=250, may
    pass before it moves): the margin is more than a tick."""
    from benchmarks.four_apps import kernel_clock_ns
    now = kernel_clock_ns()
    time.sleep((WINDOW_NS - now % WINDOW_NS + margin_ns) / 1e9)
    return kernel_clock_ns() // WINDOW_NS
