"""Synthetic traffic for the demo, the tests and the benchmarks.

Every generator is deterministic for a seed and returns a list of
``(ts_ns, frame_bytes)``: real Ethernet frames built with scapy. Addresses
come from the benchmarking ranges only: 198.18.0.0/15 (RFC 2544) and
2001:2::/48 (RFC 5180). Nothing here sends anything; ``write_pcap`` stores a
list of frames as a capture that ``xdpmon replay`` reads.
"""

from __future__ import annotations

import random

from scapy.all import (DNS, DNSQR, DNSRR, Dot1AD, Dot1Q, Ether, ICMP, IP, IPOption_RR, IPOption_Router_Alert,
                       IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       Raw, TCP, UDP, fragment)
from scapy.layers.l2 import ARP

S = 1_000_000_000
MS = 1_000_000
US = 1_000

CLIENT_NET = "198.18"      # 198.18.0.0/16: clients, attackers
SERVER_NET = "198.19"      # 198.19.0.0/16: servers, victims
V6_NET = "2001:2:0"        # 2001:2::/48


def _mac(i: int) -> str:
    return "02:00:00:%02x:%02x:%02x" % ((i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)


def client(rnd: random.Random) -> str:
    return f"{CLIENT_NET}.{rnd.randrange(0, 256)}.{rnd.randrange(1, 255)}"


def server(i: int) -> str:
    return f"{SERVER_NET}.0.{i % 250 + 1}"


def _eth(i: int = 0):
    return Ether(src=_mac(i), dst=_mac(0xFFFFF))


def benign_tcp_flows(n: int = 100, seed: int = 1, t0: int = 0) -> list[tuple[int, bytes]]:
    """n complete TCP connections: handshake, a little data, FIN/ACK close."""
    rnd = random.Random(seed)
    out = []
    t = t0
    for i in range(n):
        c, s = client(rnd), server(rnd.randrange(8))
        sport, dport = rnd.randrange(1024, 65535), rnd.choice([80, 443, 22, 8080])
        cs, ss = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
        e = _eth(i)
        up = lambda fl, seq, ack, data=b"": bytes(e / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags=fl, seq=seq, ack=ack) / data)
        down = lambda fl, seq, ack, data=b"": bytes(e / IP(src=s, dst=c) / TCP(sport=dport, dport=sport, flags=fl, seq=seq, ack=ack) / data)
        req = b"GET / HTTP/1.1\r\n\r\n"
        resp = b"x" * rnd.randrange(100, 1400)
        seq = [up("S", cs, 0), down("SA", ss, cs + 1), up("A", cs + 1, ss + 1),
               up("PA", cs + 1, ss + 1, req), down("PA", ss + 1, cs + 1 + len(req), resp),
               up("FA", cs + 1 + len(req), ss + 1 + len(resp)), down("FA", ss + 1 + len(resp), cs + 2 + len(req)),
               up("A", cs + 2 + len(req), ss + 2 + len(resp))]
        for f in seq:
            out.append((t, f))
            t += rnd.randrange(50 * US, 2 * MS)
    return out


def dns_traffic(n: int = 100, seed: int = 2, t0: int = 0) -> list[tuple[int, bytes]]:
    """n DNS queries, each answered (some NXDOMAIN)."""
    rnd = random.Random(seed)
    out = []
    t = t0
    resolver = server(53)
    for i in range(n):
        c = client(rnd)
        sport = rnd.randrange(1024, 65535)
        name = f"host{rnd.randrange(1000)}.example"
        qid = rnd.randrange(1 << 16)
        q = _eth(i) / IP(src=c, dst=resolver) / UDP(sport=sport, dport=53) / DNS(id=qid, rd=1, qd=DNSQR(qname=name))
        rcode = 3 if rnd.random() < 0.1 else 0
        an = [] if rcode else DNSRR(rrname=name, rdata=f"{SERVER_NET}.1.{rnd.randrange(1, 255)}")
        r = _eth(i) / IP(src=resolver, dst=c) / UDP(sport=53, dport=sport) / DNS(id=qid, qr=1, ra=1, rd=1, rcode=rcode, qd=DNSQR(qname=name), an=an)
        out.append((t, bytes(q)))
        t += rnd.randrange(100 * US, 5 * MS)
        out.append((t, bytes(r)))
        t += rnd.randrange(100 * US, 5 * MS)
    return out


def dns_amplification(n: int = 200, seed: int = 3, t0: int = 0, victim: str = "198.18.200.1") -> list[tuple[int, bytes]]:
    """Large DNS responses to one victim that sent no queries (reflection)."""
    rnd = random.Random(seed)
    out = []
    t = t0
    for i in range(n):
        resolver = f"{SERVER_NET}.53.{rnd.randrange(1, 255)}"
        r = _eth(i) / IP(src=resolver, dst=victim) / UDP(sport=53, dport=rnd.randrange(1024, 65535)) / \
            DNS(id=rnd.randrange(1 << 16), qr=1, ra=1, qd=DNSQR(qname="big.example", qtype=255)) / Raw(b"A" * 1200)
        out.append((t, bytes(r)))
        t += rnd.randrange(10 * US, 200 * US)
    return out


def syn_flood(n: int = 2000, seed: int = 4, t0: int = 0, victim: str = "198.19.0.80", rate_pps: int = 20000) -> list[tuple[int, bytes]]:
    """SYNs from spoofed sources to one victim, at rate_pps."""
    rnd = random.Random(seed)
    gap = S // rate_pps
    out = []
    for i in range(n):
        f = _eth(i) / IP(src=client(rnd), dst=victim, ttl=rnd.randrange(30, 128)) / \
            TCP(sport=rnd.randrange(1024, 65535), dport=80, flags="S", seq=rnd.randrange(1 << 32))
        out.append((t0 + i * gap, bytes(f)))
    return out


def flood_inside_traffic(seconds: int = 20, flood_at: int = 8, flood_for: int = 6, rate_pps: int = 2000,
                         sources: int | None = None, seed: int = 12, t0: int = 1_767_225_600 * S,
                         victim: str = "198.19.0.80") -> list[tuple[int, bytes]]:
    """Ordinary traffic for ``seconds`` (full TCP connections to 8 servers, DNS queries and
    answers, about 1,000 frames a second) with a SYN flood to ``victim`` from ``flood_at``
    for ``flood_for`` seconds at ``rate_pps``: from spoofed sources (a new random one per
    SYN), or from ``sources`` real ones (each SYNs again and again)."""
    rnd = random.Random(seed)
    per_s = 60
    benign = benign_tcp_flows(per_s * seconds, seed, t0) + dns_traffic(per_s * seconds, seed + 1, t0)
    span = max(ts for ts, _ in benign) - t0 or 1
    benign = [(t0 + (ts - t0) * seconds * S // span, f) for ts, f in benign]      # spread over the seconds
    if sources is None:
        flood = syn_flood(rate_pps * flood_for, seed + 2, t0 + flood_at * S, victim, rate_pps)
    else:
        srcs = [client(rnd) for _ in range(sources)]
        gap = S // rate_pps
        flood = [(t0 + flood_at * S + i * gap,
                  bytes(_eth(i) / IP(src=srcs[i % sources], dst=victim) /
                        TCP(sport=1024 + i % 60000, dport=80, flags="S", seq=rnd.randrange(1 << 32))))
                 for i in range(rate_pps * flood_for)]
    return sorted(benign + flood, key=lambda x: x[0])


def port_scan(n: int = 500, seed: int = 5, t0: int = 0, scanner: str = "198.18.66.6", target: str = "198.19.0.10") -> list[tuple[int, bytes]]:
    """One source probing n TCP ports of one host, with RSTs back for closed ports."""
    rnd = random.Random(seed)
    ports = rnd.sample(range(1, 65536), n)
    out = []
    t = t0
    for i, p in enumerate(ports):
        out.append((t, bytes(_eth(i) / IP(src=scanner, dst=target) / TCP(sport=40000 + i % 1000, dport=p, flags="S"))))
        t += 200 * US
        out.append((t, bytes(_eth(i) / IP(src=target, dst=scanner) / TCP(sport=p, dport=40000 + i % 1000, flags="RA"))))
        t += 300 * US
    return out


def vlan_qinq(n: int = 100, seed: int = 6, t0: int = 0) -> list[tuple[int, bytes]]:
    """802.1Q and 802.1ad/802.1Q (QinQ) tagged IPv4 and IPv6 traffic."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        inner = IP(src=client(rnd), dst=server(i)) / UDP(sport=rnd.randrange(1024, 65535), dport=rnd.choice([53, 123, 514]))
        if i % 3 == 0:
            inner = IPv6(src=f"{V6_NET}::{i + 1:x}", dst=f"{V6_NET}::1:{i + 1:x}") / TCP(sport=1000 + i, dport=443, flags="S")
        if i % 2:
            f = _eth(i) / Dot1AD(vlan=rnd.randrange(1, 4095)) / Dot1Q(vlan=rnd.randrange(1, 4095)) / inner
        else:
            f = _eth(i) / Dot1Q(vlan=rnd.choice([10, 20, 100]), prio=rnd.randrange(8)) / inner
        out.append((t0 + i * 500 * US, bytes(f)))
    return out


def ipv6_ext_headers(n: int = 100, seed: int = 7, t0: int = 0) -> list[tuple[int, bytes]]:
    """IPv6 with hop-by-hop, routing, destination options and fragment headers."""
    rnd = random.Random(seed)
    chains = [
        lambda: IPv6ExtHdrHopByHop(),
        lambda: IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
        lambda: IPv6ExtHdrRouting(addresses=[f"{V6_NET}::99"]),
        lambda: IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[]) / IPv6ExtHdrDestOpt(),
        lambda: IPv6ExtHdrFragment(offset=0, m=0, id=rnd.randrange(1 << 32)),
    ]
    out = []
    for i in range(n):
        l4 = TCP(sport=2000 + i, dport=80, flags="S") if i % 2 else UDP(sport=3000 + i, dport=53) / DNS(rd=1, qd=DNSQR(qname="v6.example"))
        f = _eth(i) / IPv6(src=f"{V6_NET}::{rnd.randrange(1, 65535):x}", dst=f"{V6_NET}::1", hlim=rnd.choice([1, 64, 255])) / \
            rnd.choice(chains)() / l4
        out.append((t0 + i * 700 * US, bytes(f)))
    return out


def ipv4_options(n: int = 100, seed: int = 8, t0: int = 0) -> list[tuple[int, bytes]]:
    """IPv4 headers with options (IHL > 5): record route, router alert."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        opts = [IPOption_Router_Alert()] if i % 2 else [IPOption_RR(routers=["198.18.0.1", "198.18.0.2"])]
        l4 = TCP(sport=1000 + i, dport=80, flags="S") if i % 3 else ICMP(type=8)
        f = _eth(i) / IP(src=client(rnd), dst=server(i), options=opts, ttl=rnd.choice([1, 2, 64])) / l4
        out.append((t0 + i * 300 * US, bytes(f)))
    return out


def fragments(n: int = 50, seed: int = 9, t0: int = 0) -> list[tuple[int, bytes]]:
    """IPv4 datagrams fragmented into 3+ pieces: first fragments carry L4, the rest do not."""
    rnd = random.Random(seed)
    out = []
    t = t0
    for i in range(n):
        pkt = IP(src=client(rnd), dst=server(i), id=rnd.randrange(1 << 16)) / UDP(sport=5000 + i, dport=53) / Raw(b"F" * 1200)
        for frag in fragment(pkt, fragsize=400):
            out.append((t, bytes(_eth(i) / frag)))
            t += 100 * US
    return out


def other_traffic(n: int = 20, seed: int = 10, t0: int = 0) -> list[tuple[int, bytes]]:
    """ARP and ICMP: traffic most apps ignore."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2:
            f = Ether(src=_mac(i), dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=client(rnd), pdst=server(i))
        else:
            f = _eth(i) / IP(src=client(rnd), dst=server(i)) / ICMP(type=8) / Raw(b"ping" * 8)
        out.append((t0 + i * 10 * MS, bytes(f)))
    return out


def mixed(seed: int = 11, t0: int = 0) -> list[tuple[int, bytes]]:
    """A bit of everything, merged by time."""
    parts = [benign_tcp_flows(40, seed, t0), dns_traffic(40, seed + 1, t0), syn_flood(300, seed + 2, t0 + 50 * MS),
             port_scan(120, seed + 3, t0), vlan_qinq(40, seed + 4, t0), ipv6_ext_headers(40, seed + 5, t0),
             ipv4_options(40, seed + 6, t0), fragments(20, seed + 7, t0), other_traffic(20, seed + 8, t0)]
    return sorted((f for p in parts for f in p), key=lambda x: x[0])


def demo(seed: int = 42) -> list[tuple[int, bytes]]:
    """The demo capture: 10 s of benign traffic (web, DNS, tagged, IPv6) with a
    SYN flood from spoofed sources in the middle, a port scan and a DNS
    reflection burst. About 25,000 frames."""
    base = 1_767_225_600 * S          # 2026-01-01T00:00:00Z
    parts = [benign_tcp_flows(600, seed, base), dns_traffic(800, seed + 1, base),
             vlan_qinq(200, seed + 2, base), ipv6_ext_headers(200, seed + 3, base),
             ipv4_options(100, seed + 4, base), fragments(50, seed + 5, base), other_traffic(100, seed + 6, base),
             port_scan(300, seed + 7, base + 2 * S),
             syn_flood(12000, seed + 8, base + 4 * S, rate_pps=8000),
             dns_amplification(1500, seed + 9, base + 7 * S)]
    return sorted((f for p in parts for f in p), key=lambda x: x[0])


def write_pcap(path: str, frames: list[tuple[int, bytes]]) -> None:
    """Store frames as a nanosecond-resolution pcap (Ethernet link type)."""
    import dpkt
    from decimal import Decimal
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, nano=True, linktype=dpkt.pcap.DLT_EN10MB, snaplen=262144)
        for ts, data in frames:
            w.writepkt(data, ts=Decimal(ts) / S)
