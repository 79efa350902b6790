"""The benchmark frames: real Ethernet frames built with scapy, each with what
the program under test must make of it.

Addresses come from the benchmarking ranges only: 198.18.0.0/15 (RFC 2544) and
2001:2::/48 (RFC 5180). Every frame carries its expectations, so that a run can
be checked (benchmarks/perf/checks.py): ``outcome`` is the parse outcome counter
the nine specs/ merged must increase on every repeat, ``dst`` the ip.dst that
traffic_accounting.per_dst counts it under (None: not an IP packet it counts),
``new_flow`` that it is run through the new-flow wrapper (benchmarks/perf/newflow.py),
which increments its IPv4 source on every repeat, and ``new_keys`` the
statistics keyed by the source (among other fields) that then get R new keys.

The parse outcome of a frame depends on the layers the program parses (an app
that reads only ``ip`` does not parse TCP); ``checks.expected_outcome`` gives
it for any program from the reference decoder, and tests/test_bench_harness.py
checks the ``outcome`` declared here against the kernel.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from scapy.all import DNS, DNSQR, DNSRR, Dot1AD, Dot1Q, Ether, IP, IPOption_RR, IPv6, Raw, TCP, UDP

CLIENT = "198.18.0.10"
SERVER = "198.19.0.80"
V6_CLIENT = "2001:2::10"
V6_SERVER = "2001:2::80"
# New-flow SYN sources: 198.19.128.0/17, which examples/traffic/generators.py never uses
# (its sources are in 198.18.0.0/16 and 198.19.0-53.x), so the capture sample cannot
# have given one of them a key already.
SYN_BASE = "198.19.128.0"
SYN_LAST = "198.19.255.255"
SPORT, DPORT = 40000, 80
PAYLOAD = b"x" * 100


@dataclass(frozen=True)
class BenchFrame:
    """One benchmark frame and what the merged nine specs/ must make of it."""

    name: str
    data: bytes
    outcome: str                 # parse outcome counter, e.g. "parse.ok"
    dst: str | None              # traffic_accounting.per_dst key (text), None when not counted
    new_flow: bool = False       # run through the new-flow wrapper (a new source per repeat)
    new_keys: tuple = ()         # (app, stat) keyed by ip.src that get a new key on every repeat
    about: str = ""

    @property
    def length(self) -> int:
        return len(self.data)


def _eth():
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _tcp(flags: str, payload: bytes = b"", seq: int = 1000, ack: int = 0, up: bool = True):
    if up:
        return IP(src=CLIENT, dst=SERVER, ttl=64) / TCP(sport=SPORT, dport=DPORT, flags=flags, seq=seq, ack=ack) / payload
    return IP(src=SERVER, dst=CLIENT, ttl=64) / TCP(sport=DPORT, dport=SPORT, flags=flags, seq=seq, ack=ack) / payload


def syn_new_flow() -> BenchFrame:
    return BenchFrame("tcp_syn_new_flow", bytes(_eth() / IP(src=SYN_BASE, dst=SERVER, ttl=64)
                                                 / TCP(sport=SPORT, dport=DPORT, flags="S", seq=1000)),
                      "parse.ok", SERVER, new_flow=True,
                      new_keys=(("port_scan", "ports"), ("half_open_tcp", "pending")), about="TCP SYN, a new source (new flow) on every repeat")


def benchmark_frames() -> list[BenchFrame]:
    """The frames every configuration is measured on, in a fixed order."""
    dns_q = DNS(id=7, rd=1, qd=DNSQR(qname="example.test", qtype="A"))
    dns_r = DNS(id=7, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname="example.test", qtype="A"),
                an=DNSRR(rrname="example.test", type="A", ttl=60, rdata="198.19.0.53"))
    ip_tcp = TCP(sport=SPORT, dport=DPORT, flags="PA", seq=1001, ack=5001) / PAYLOAD
    full = bytes(_eth() / _tcp("PA", PAYLOAD, seq=1001, ack=5001))
    return [
        syn_new_flow(),
        BenchFrame("tcp_synack", bytes(_eth() / _tcp("SA", seq=5000, ack=1001, up=False)), "parse.ok", CLIENT,
                   about="TCP SYN/ACK of an existing flow"),
        BenchFrame("tcp_established", full, "parse.ok", SERVER, about="TCP ACK with 100 bytes of payload"),
        BenchFrame("dns_query", bytes(_eth() / IP(src=CLIENT, dst=SERVER, ttl=64) / UDP(sport=33333, dport=53)
                                      / dns_q), "parse.ok", SERVER, about="DNS query over UDP 53"),
        BenchFrame("dns_response", bytes(_eth() / IP(src=SERVER, dst=CLIENT, ttl=64) / UDP(sport=53, dport=33333)
                                         / dns_r), "parse.ok", CLIENT, about="DNS response (qr=1) with one answer"),
        BenchFrame("udp_other", bytes(_eth() / IP(src=CLIENT, dst=SERVER, ttl=64) / UDP(sport=5000, dport=6000)
                                      / PAYLOAD), "parse.ok", SERVER, about="UDP, not DNS, high ports"),
        BenchFrame("ipv6_tcp", bytes(_eth() / IPv6(src=V6_CLIENT, dst=V6_SERVER, hlim=64) / ip_tcp), "parse.ok",
                   V6_SERVER, about="IPv6 TCP ACK with payload"),
        BenchFrame("vlan_tcp", bytes(_eth() / Dot1Q(vlan=100) / IP(src=CLIENT, dst=SERVER, ttl=64) / ip_tcp),
                   "parse.ok", SERVER, about="802.1Q-tagged TCP ACK with payload"),
        BenchFrame("qinq_tcp", bytes(_eth() / Dot1AD(vlan=10) / Dot1Q(vlan=100) / IP(src=CLIENT, dst=SERVER, ttl=64)
                                     / ip_tcp), "parse.ok", SERVER, about="QinQ (802.1ad + 802.1Q) TCP ACK"),
        BenchFrame("ipv4_options", bytes(_eth() / IP(src=CLIENT, dst=SERVER, ttl=64, options=[IPOption_RR(routers=["0.0.0.0"] * 3)])
                                         / ip_tcp), "parse.ok", SERVER, about="IPv4 with a record-route option (IHL 9)"),
        BenchFrame("ipv4_fragment", bytes(_eth() / IP(src=CLIENT, dst=SERVER, ttl=64, proto=17, flags=0, frag=185)
                                          / Raw(b"y" * 64)), "parse.fragment", SERVER,
                   about="a non-first IPv4 fragment (offset 1480): no L4 header"),
        BenchFrame("truncated_tcp", full[:14 + 20 + 10], "parse.truncated_tcp", SERVER,
                   about="Ethernet + IPv4 + the first 10 bytes of a TCP header"),
    ]


def by_name(name: str) -> BenchFrame:
    for f in benchmark_frames():
        if f.name == name:
            return f
    known = ", ".join(f.name for f in benchmark_frames())
    raise KeyError(f"no benchmark frame {name!r} (frames: {known})")


def source_after(base: str, n: int) -> str:
    """The IPv4 address ``n`` after ``base`` (the source the wrapper gives repeat ``n``);
    new-flow sources must stay in SYN_BASE..SYN_LAST."""
    addr = ipaddress.IPv4Address(base) + n
    if addr > ipaddress.IPv4Address(SYN_LAST):
        raise ValueError(f"new-flow source {addr} is past {SYN_LAST}: fewer rounds or a smaller repeat "
                         f"(at most {int(ipaddress.IPv4Address(SYN_LAST)) - int(ipaddress.IPv4Address(SYN_BASE))} "
                         f"new sources per program)")
    return str(addr)


def with_source(frame: BenchFrame, src: str) -> bytes:
    """``frame`` (IPv4) with source ``src``, checksums recomputed: each run of the
    new-flow SYN starts where the last one's sources ended."""
    pkt = Ether(frame.data)
    pkt[IP].src = src
    del pkt[IP].chksum
    if TCP in pkt:
        del pkt[TCP].chksum
    return bytes(pkt)


def capture_sample(n: int = 300, seed: int = 11) -> list[bytes]:
    """``n`` frames of examples/traffic/generators.py mixed(), evenly spaced, in
    capture order: "a capture replayed in order", each frame run once."""
    from examples.traffic import generators
    frames = [data for _, data in generators.mixed(seed=seed) if len(data) >= 14]
    step = max(1, len(frames) // n)
    return frames[::step][:n]
