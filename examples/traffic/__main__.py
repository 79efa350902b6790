"""python -m examples.traffic SCENARIO OUT.pcap [--seed N]: write a synthetic capture."""

import argparse

from . import generators as g

SCENARIOS = {
    "demo": lambda seed: g.demo(seed),
    "mixed": lambda seed: g.mixed(seed),
    "benign": lambda seed: g.benign_tcp_flows(200, seed),
    "dns": lambda seed: g.dns_traffic(200, seed),
    "syn_flood": lambda seed: g.syn_flood(5000, seed),
    "port_scan": lambda seed: g.port_scan(500, seed),
    "dns_amplification": lambda seed: g.dns_amplification(500, seed),
}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m examples.traffic", description=__doc__)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    frames = SCENARIOS[a.scenario](a.seed)
    g.write_pcap(a.out, frames)
    print(f"{a.out}: {len(frames)} frames ({a.scenario}, seed {a.seed})")


if __name__ == "__main__":
    main()
