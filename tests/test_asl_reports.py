"""The periodic reports of the reference apps' ASL (examples/asl/), on captures of known
content replayed with ``xdpmon replay --asl --json`` (a tick per second of capture time):
each report's numbers against what the frames themselves say."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from examples.traffic import generators as G

ROOT = Path(__file__).resolve().parents[1]
S = 1_000_000_000
T0 = 1_767_225_600 * S

pytestmark = [pytest.mark.kernel]


def replay(tmp_path, specs, frames) -> list[dict]:
    pcap = tmp_path / "t.pcap"
    G.write_pcap(str(pcap), frames)
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "replay", *[str(ROOT / "specs" / s) for s in specs],
                        "--pcap", str(pcap), "--asl", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["asl_events"]


def ip(b: bytes) -> str:
    return ".".join(map(str, b))


def test_dns_report(kernel, tmp_path):
    frames = G.dns_traffic(2000, 2, T0)                  # 10.3 s of queries, each answered
    reports = [e for e in replay(tmp_path, ["dns_flows.mon"], frames) if e["kind"] == "dns_report"]
    # one at the 10th tick (10 s of capture time), one at the stop for the rest
    assert [e["time_ns"] // S - T0 // S for e in reports] == [9, 10]
    q, r = Counter(), Counter()
    clients = defaultdict(lambda: [0, 0])
    servers = defaultdict(lambda: [0, 0])
    rcodes = Counter()
    for ts, f in frames:
        src, dst = ip(f[26:30]), ip(f[30:34])
        sport, dport = struct.unpack("!HH", f[34:38])
        if dport == 53:
            q["n"] += 1; q["b"] += len(f)
            clients[src][0] += 1; clients[src][1] += len(f); servers[dst][0] += len(f)
        else:
            r["n"] += 1; r["b"] += len(f)
            clients[dst][0] += 1; clients[dst][1] += len(f); servers[src][1] += len(f)
            rcodes[{0: "NOERROR", 3: "NXDOMAIN"}[f[45] & 0xF]] += 1
    last = reports[-1]["fields"]
    top = sorted(clients.items(), key=lambda t: (-t[1][1], t[0]))[:5]
    (server, (qb, rb)), = servers.items()
    assert last == {"queries": q["n"], "query_bytes": q["b"], "responses": r["n"], "response_bytes": r["b"],
                    "rcodes": dict(rcodes), "nxdomain_share": round(rcodes["NXDOMAIN"] / r["n"], 4),
                    "top_clients": [[c, n, b] for c, (n, b) in top], "servers": [[server, qb, rb, round(rb / qb, 2)]],
                    "new_since_last": q["n"] - reports[0]["fields"]["queries"]}
    assert (q["n"], r["n"]) == (2000, 2000) and rcodes["NXDOMAIN"] == 212
    # the first report: the frames of its first 10 s (its tick comes before the first frame of 10 s)
    first = [f for ts, f in frames if ts < T0 + 10 * S]
    assert reports[0]["fields"]["queries"] == sum(1 for f in first if struct.unpack("!H", f[36:38])[0] == 53)


def test_half_open_summaries_and_the_growth_alert(kernel, tmp_path):
    """A spoofed SYN flood of 2,000 SYN/s from 4 s to 14 s inside ordinary traffic: the
    table passes max_pending (10,000) at 9 s; a summary a second from then, the pending
    handshakes growing by 2,000 a second until the flood ends, then flat (none of the
    flood's handshakes completes; each expires 30 s after its SYN)."""
    events = replay(tmp_path, ["half_open_tcp.mon"], G.flood_inside_traffic(seconds=20, flood_at=4, flood_for=10))
    half = [e["fields"] for e in events if e["kind"] == "half_open"]
    assert [h["pending"] for h in half] == [10001, 12001, 14001, 16001, 18001, 20000, 20001] + [20000] * 4
    assert [h["growth"] for h in half] == [None, 2000, 2000, 2000, 2000, 1999, 1, -1, 0, 0, 0]
    assert {h["oldest_ns"] for h in half} == {T0 + 4 * S}            # the flood's first SYN
    assert all(h["top_destinations"][0] == ["198.19.0.80", 20000 if h["pending"] >= 20000 else h["pending"]]
               for h in half)
    assert [e["fields"] for e in events if e["kind"] == "half_open_growing"] == [
        {"from": 10001, "to": 16001, "summaries": 3, "top_destination": "198.19.0.80"}]
