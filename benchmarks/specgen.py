"""Generate many varied apps for scale tests and benchmarks.

Apps draw from a small pool of selects, keys, aggregates and rules, so a set
of N apps has the overlap real deployments have (several apps selecting TCP,
keying by ip.src, ...) as well as apps of their own.
"""

from __future__ import annotations

import random

SELECTS = [
    "tcp", "udp", "ip", "tcp.syn and not tcp.ack", "udp.port == 53", "icmp or icmp6",
    "ip.ttl <= 1", "l4.dport in 1024..65535", "ip.dst in 198.18.0.0/15", "tcp.rst",
    "vlan.id == 100", "ipv6 and ip.proto == 17", "pkt.len > 1000", "tcp.port in {80, 443}",
]
KEYS = ["ip.src", "ip.dst", "(ip.src, ip.dst)", "ip.proto", "l4.dport", "(ip.src, l4.dport)", "vlan.id"]
AGGS = ["count()", "sum(pkt.len)", "max(pkt.len) as biggest", "min(pkt.ts) as first", "hist(pkt.len)"]
WINDOWS = ["", " window 1s", " window 10s"]
WHERES = ["", " where pkt.len > 100", " where tcp.syn"]


def generate(n: int, seed: int = 1, on_demand_every: int = 8) -> str:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        name = f"app{i:04d}"
        lines = [f"app {name} {{"]
        on_demand = on_demand_every and i % on_demand_every == on_demand_every - 1
        if on_demand:
            lines.append("  mode on_demand")
        lines.append(f"  t1 {{ select {rnd.choice(SELECTS)} }}")
        aggs = rnd.sample(AGGS, rnd.randint(1, 3))
        key = rnd.choice(KEYS)
        lines.append("  t2 {")
        lines.append(f"    st = {', '.join(aggs)} by {key}{rnd.choice(WINDOWS)}{rnd.choice(WHERES)}")
        if rnd.random() < 0.3:
            lines.append("    uniq = distinct(ip.src, l4.dport) window 1s")
        lines.append("  }")
        member = "count" if "count()" in aggs else ("sum_pkt_len" if "sum(pkt.len)" in aggs else None)
        if member and rnd.random() < 0.6:
            lines.append("  t3 {")
            lines.append(f"    when st.{member} > param limit = {rnd.randint(10, 10000)} {{")
            target = f"app{i + on_demand_every - 1 - i % on_demand_every:04d}"
            if on_demand_every and i % on_demand_every == 0 and i + on_demand_every - 1 < n:
                lines.append(f"      enable {target} for 30s")
            lines.append("      send packet(ip.src, ip.dst, pkt.len) to asl limit 100/s")
            lines.append("    }")
            lines.append("  }")
        lines.append("}")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    import sys
    sys.stdout.write(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 32))
