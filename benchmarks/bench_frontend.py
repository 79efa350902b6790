"""Front-end speed: parse + analyse (compiler.frontend.load) of

- every spec in specs/ (target: under 100 ms, median of several runs), and
- one generated file of 1,000 apps with assorted stats and rules (target: under 2 s).

Run with ``python -m benchmarks frontend`` (or ``make bench``). The first load of
the grammar (building Lark's LALR tables) is done before timing: it happens once
per process and is not what the targets are about; it is reported separately.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS_TARGET_MS = 100.0
BIG_TARGET_S = 2.0
BIG_APPS = 1000
RUNS = 15

# Bodies of the generated apps, cycled: every kind of statistic and action.
_TEMPLATES = [
    """  t1 {{ select ip }}
  t2 {{ per_dst = count() as packets, sum(pkt.len) as bytes by ip.dst size 65536 }}
""",
    """  t1 {{ select udp.port == 53 }}
  t2 {{
    queries   = count(), sum(pkt.len) as bytes by ip.src where not dns.qr window 10s
    responses = count(), sum(pkt.len) as bytes by ip.dst where dns.qr window 10s
  }}
  t3 {{
    when dns.qr and responses.bytes > param min_bytes = 1M
         and responses.bytes > (param ratio = 10) * queries[ip.dst].bytes {{
      send packet(ip.src, ip.dst, pkt.len) to asl limit 100/s
      alert "amplification {i}" limit 1/s
    }}
  }}
""",
    """  t1 {{ select tcp }}
  t2 {{
    pending = track (ip.src, ip.dst, tcp.sport, tcp.dport)
              open when tcp.syn and not tcp.ack
              close when tcp.ack and not tcp.syn
              expire 30s
  }}
  t3 {{ when size(pending) > param max_pending = {i} {{ send summary to asl every 1s }} }}
  asl "examples/asl/app_{i}.py"
""",
    """  t1 {{ select tcp.syn and not tcp.ack or udp and ip.dst in {{10.0.0.0/8, 192.168.0.0/16, 2001:db8::/32}} }}
  t2 {{ ports = distinct(ip.dst, l4.dport) by ip.src window 10s size 65536 }}
  t3 {{ when ports > param max_ports = 100 {{ send packet(ip.src, ip.dst, l4.dport) to asl limit 100/s }} }}
""",
    """  t1 {{ select ip.ttl <= 1 and tcp.dport in {{22, 80, 443, 1024..65535}} }}
  t2 {{
    sizes = hist(pkt.len), count(), sum(pkt.len) as bytes by ip.proto
    heavy = cms(ip.src, width=4096, depth=4)
    low   = count(), max(pkt.ts) as last_seen by ip.src on full lru
  }}
  t3 {{ when low.count > param per_src = 100 and heavy > 1000 {{ alert "low ttl {i}" limit 1/s }} }}
""",
    """  mode on_demand
  t1 {{ select tcp.syn and not tcp.ack and vlan.id != 100 }}
  t2 {{ syns = count() by ip.dst window 1s }}
  t3 {{ when syns > param per_dst = 1000 {{ send packet(ip.src, ip.dst, tcp.dport) to asl limit 1000/s }} }}
""",
]


def generate(n: int = BIG_APPS) -> str:
    """A spec file of ``n`` apps; every sixth one is on demand and the app
    after it enables it."""
    parts = []
    for i in range(n):
        body = _TEMPLATES[i % len(_TEMPLATES)].format(i=i)
        if i % len(_TEMPLATES) == 0 and i + 5 < n:
            body += f"  t3 {{ when per_dst.packets > 1000 {{ enable app_{i + 5} for 60s }} }}\n"
        parts.append(f"# generated app {i}\napp app_{i} {{\n{body}}}\n")
    return "\n".join(parts)


def _time(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> dict:
    from compiler.frontend import load
    from dsl.parser import _lark

    t = time.perf_counter()
    _lark()
    grammar_ms = (time.perf_counter() - t) * 1000

    specs = sorted((ROOT / "specs").glob("*.mon"))
    program, _ = load(specs)
    spec_times = _time(lambda: load(specs), RUNS)
    spec_ms = statistics.median(spec_times) * 1000

    with tempfile.TemporaryDirectory(prefix="xdpmon-bench-") as tmp:
        big = Path(tmp) / "big.mon"
        big.write_text(generate())
        big_program, _ = load([big])
        assert len(big_program.apps) == BIG_APPS
        big_times = _time(lambda: load([big]), 3)
        big_s = statistics.median(big_times)
        size_kb = big.stat().st_size / 1024

    return {
        "grammar load (once per process)": f"{grammar_ms:.1f} ms",
        f"specs/ ({len(specs)} files, {len(program.apps)} apps), median of {RUNS}":
            f"{spec_ms:.1f} ms (target {SPECS_TARGET_MS:.0f} ms) "
            f"{'PASS' if spec_ms < SPECS_TARGET_MS else 'FAIL'}",
        f"generated {BIG_APPS} apps ({size_kb:.0f} KiB), median of 3":
            f"{big_s:.2f} s (target {BIG_TARGET_S:.0f} s) {'PASS' if big_s < BIG_TARGET_S else 'FAIL'}",
    }


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
