"""The demo's frames: benign traffic for the whole run, and the flood's template.

``benign(scenario)``: ``[(offset_ns, frame)]`` over ``duration_s``, sorted: complete TCP
connections (handshake, request, response, close) to 8 servers, DNS queries each
answered (some NXDOMAIN), 802.1Q/QinQ-tagged UDP and IPv6, IPv6 with extension headers,
ARP and ICMP; built by examples/traffic/generators.py (scapy), spread evenly over the
run. Its clients are in 198.18.0.0/16, its servers in 198.19.0.0/24 (2001:2::/48 for
IPv6): none inside the flood's prefix.

``flood_template(scenario, dst_mac)``: the SYN the generator rewrites per frame
(runtime/traffic/frames.py; frame ``n`` comes from ``flood_net``'s address ``n %
sources``, port ``1024 + (n / sources) % 4``).

``write_pcap(path, ...)``: the same traffic as a capture, each frame at the time it was
(or would be) sent, so that ``xdpmon replay`` of it gives the same detections.
"""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.traffic import frames as F

from .scenario import S, Scenario

FLOOD_SPORT = 1024
FLOOD_SPORTS = 4                 # source ports in turn, per source (the generator's sport_count)


def project_root() -> Path:
    """The checkout this xdpmon runs from (it holds specs/ and examples/)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "specs").is_dir() or not (root / "examples" / "traffic" / "generators.py").is_file():
        raise FileNotFoundError(f"xdpmon demo runs from a checkout of xdpmon: {root} has no specs/ and "
                                f"examples/traffic/ (clone the repository and run make demo there)")
    return root


def _generators():
    root = project_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from examples.traffic import generators
    return generators


def benign(sc: Scenario) -> list[tuple[int, bytes]]:
    return benign_mix(sc.duration_s, sc.seed, sc.benign_flows_per_s)


def benign_mix(seconds: float, seed: int, flows_per_s: int = 40) -> list[tuple[int, bytes]]:
    """``flows_per_s`` TCP connections and as many DNS exchanges a second, with tagged,
    IPv6 and ARP/ICMP frames, spread over ``seconds``: ``[(offset_ns, frame)]``, sorted."""
    g = _generators()
    n = max(1, int(flows_per_s * seconds))
    parts = [g.benign_tcp_flows(n, seed), g.dns_traffic(n, seed + 1),
             g.vlan_qinq(max(1, int(5 * seconds)), seed + 2), g.ipv6_ext_headers(max(1, int(5 * seconds)), seed + 3),
             g.other_traffic(max(1, int(2 * seconds)), seed + 4)]
    out = []
    for p in parts:                        # each part spread over the whole run, in its own order
        t0, t1 = p[0][0], max(ts for ts, _ in p)
        span = (t1 - t0) or 1
        out += [((ts - t0) * int(seconds * S * 0.999) // span, f) for ts, f in p]
    out.sort(key=lambda x: x[0])
    return out


def flood_template(sc: Scenario, dst_mac: str = "02:00:00:00:00:01") -> F.Template:
    return F.build("tcp-syn", sc.flood_first_source, sc.victim, sport=FLOOD_SPORT, dport=80, dst_mac=dst_mac)


def flood_frames_at(sc: Scenario, first_ns: int, count: int, rate: float, template: F.Template):
    """``(ts_ns, frame)`` of the flood's frames as sent: frame ``n`` at ``first_ns + n / rate``."""
    sources = sc.flood_sources
    cache: dict[int, bytes] = {}
    for n in range(count):
        k = n % (sources * FLOOD_SPORTS)          # the frames repeat with this period
        f = cache.get(k)
        if f is None:
            src, sport = F.nth_flow(template, n, sources, FLOOD_SPORTS)
            f = cache[k] = F.rewrite(template, src, sport)
        yield first_ns + int(n * S / rate), f


def write_pcap(path: str, sc: Scenario, benign_frames, benign_t0_ns: int, flood_first_ns: int, flood_count: int,
               flood_rate: float, template: F.Template, base_ns: int) -> int:
    """Write benign and flood frames, merged by time, to a nanosecond pcap; program-clock
    times ``t`` are written as ``base_ns + (t - benign_t0_ns)``. The number written."""
    import heapq
    from decimal import Decimal

    import dpkt

    ben = ((benign_t0_ns + off, f) for off, f in benign_frames)
    flood = flood_frames_at(sc, flood_first_ns, flood_count, flood_rate, template)
    n = 0
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, nano=True, linktype=dpkt.pcap.DLT_EN10MB, snaplen=65535)
        for ts, f in heapq.merge(ben, flood, key=lambda x: x[0]):
            w.writepkt(f, ts=Decimal(base_ns + ts - benign_t0_ns) / S)
            n += 1
    return n
