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
    assert {e["severity"] for e in events if e["kind"] == "half_open_growing"} == {"warning"}
    assert {e["severity"] for e in events if e["kind"] == "half_open"} == {"info"}


def test_traffic_report(kernel, tmp_path):
    frames = G.flood_inside_traffic(seconds=12, flood_at=4, flood_for=2)
    reports = [e for e in replay(tmp_path, ["traffic_accounting.mon"], frames) if e["kind"] == "traffic_report"]
    assert len(reports) == 2                              # the 10th tick, and the stop
    per = defaultdict(lambda: [0, 0])
    for ts, f in frames:
        if struct.unpack("!H", f[12:14])[0] == 0x0800:
            per[ip(f[30:34])][0] += 1
            per[ip(f[30:34])][1] += len(f)
    total_p, total_b = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    top = sorted(per.items(), key=lambda t: (-t[1][1], t[0]))[:5]
    last = reports[-1]["fields"]
    assert {k: last[k] for k in ("packets", "bytes", "destinations", "top_destinations")} == {
        "packets": total_p, "bytes": total_b, "destinations": len(per),
        "top_destinations": [[d, p, b, round(b / total_b, 4)] for d, (p, b) in top]}
    assert last["top_destinations"][0][0] == "198.19.0.80"        # the flood's victim, 4,000 SYNs
    first = reports[0]["fields"]
    assert first["packets_per_s"] is None and last["packets_per_s"] > 0
    # over the last period: what came between the two reports, per second of capture time
    secs = (reports[1]["time_ns"] - reports[0]["time_ns"]) / 1e9
    assert last["packets_per_s"] == round((total_p - first["packets"]) / secs, 1)


def test_size_report(kernel, tmp_path):
    frames = G.flood_inside_traffic(seconds=12, flood_at=4, flood_for=2)
    (*_, last) = [e for e in replay(tmp_path, ["pkt_sizes.mon"], frames) if e["kind"] == "size_report"]
    per = defaultdict(list)
    for ts, f in frames:
        if struct.unpack("!H", f[12:14])[0] == 0x0800:
            per[{6: "tcp", 17: "udp"}[f[23]]].append(len(f))
    want = {}
    for proto, sizes in per.items():
        hist = Counter(f"{1 << (n.bit_length() - 1)}-{(1 << n.bit_length()) - 1}" for n in sizes)
        want[proto] = {"packets": len(sizes), "bytes": sum(sizes), "mean_bytes": round(sum(sizes) / len(sizes), 1),
                       "small_share": round(sum(1 for n in sizes if n < 128) / len(sizes), 4), "sizes": dict(hist)}
    assert last["fields"]["protocols"] == want
    assert want["tcp"]["small_share"] > 0.5                    # the flood's 4,000 SYNs are 54-byte frames


def test_dns_amplification_start_and_end(kernel, tmp_path):
    """3,000 large responses to a victim that sent no query (from 2 s, about 0.3 s of it)
    inside 10 s of ordinary DNS: one start, when its response bytes in the window passed
    min_bytes (1 MB), and one end, 2 s after its last record."""
    victim = "198.18.200.1"
    attack = G.dns_amplification(3000, 3, T0 + 2 * S, victim)
    frames = sorted(G.dns_traffic(2000, 2, T0) + attack, key=lambda x: x[0])
    events = [e for e in replay(tmp_path, ["dns_amplification.mon"], frames) if e["app"] == "dns_amplification"]
    assert [e["kind"] for e in events] == ["amplification_started", "amplification_ended"]
    assert [e["severity"] for e in events] == ["critical", "notice"]        # what syslog routes on
    total, first = 0, None
    for ts, f in attack:
        total += len(f)
        if total > 1_000_000:
            first = (ts, total)
            break
    start, end = events[0]["fields"], events[1]["fields"]
    assert start == {"victim": victim, "started_ns": first[0], "response_bytes": first[1], "query_bytes": 0,
                     "factor": None}
    assert start["started_ns"] <= end["ended_ns"] <= attack[-1][0]
    reflectors = {ip(f[26:30]) for _, f in attack}
    assert end["victim"] == victim and 0 < end["reflectors"] <= len(reflectors)
    assert end["records"] <= sum(1 for ts, _ in attack if ts >= first[0])
    assert events[1]["time_ns"] - end["ended_ns"] >= 2 * S               # quiet for 2 s first


def test_ttl_expiry_sources(kernel, tmp_path):
    """Two sources send TTL-1 packets (150 and 300), a third 50 (under per_src = 100)."""
    from scapy.all import IP, UDP
    e = G._eth()
    frames, t = [], T0
    for src, n in (("198.18.7.1", 150), ("198.18.7.2", 300), ("198.18.7.3", 50)):
        for i in range(n):
            t += 1_000_000
            frames.append((t, bytes(e / IP(src=src, dst="198.19.0.1", ttl=1) / UDP(sport=33434 + i, dport=33434))))
    frames = sorted(frames + G.dns_traffic(200, 2, T0), key=lambda x: x[0])
    events = [ev for ev in replay(tmp_path, ["ttl_expiry.mon"], frames) if ev["app"] == "ttl_expiry"]
    named = [ev["fields"] for ev in events if ev["kind"] == "ttl_expiry_source"]
    # the first at its alert (its 101st packet); the second's alerts fall within the rule's
    # 1/s limit, so the tick of 1 s names it, with all of its packets by then
    assert [(n["source"], n["packets"]) for n in named] == [("198.18.7.1", 101), ("198.18.7.2", 300)]
    assert events[-1]["kind"] == "ttl_report"
    assert {e["severity"] for e in events if e["kind"] == "ttl_expiry_source"} == {"warning"}
    assert events[-1]["fields"] == {"sources": [["198.18.7.2", 300], ["198.18.7.1", 150]]}


def test_port_scan_scanner(kernel, tmp_path):
    """One source probing 6,000 ports of one host at 2,000 a second (from 1 s), inside
    ordinary traffic: named once, then a summary at each tick where its count grew."""
    scan = G.port_scan(6000, 5, T0 + S)
    frames = sorted(scan + G.dns_traffic(1000, 2, T0), key=lambda x: x[0])
    events = [e for e in replay(tmp_path, ["port_scan.mon"], frames) if e["app"] == "port_scan"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "scanner" and set(kinds[1:]) == {"scanner_summary"}
    assert [e["severity"] for e in events] == ["warning"] + ["info"] * (len(events) - 1)
    assert events[0]["fields"]["source"] == "198.18.66.6" and events[0]["fields"]["threshold"] == 100
    ports = [e["fields"]["ports"] for e in events[1:]]
    assert ports == sorted(set(ports)) and len(ports) >= 2        # growing, never repeated unchanged
    assert {e["fields"]["hosts"] for e in events[1:]} == {1}
    # the kernel sends probes past 100 distinct ports, at most 100 a second: what the
    # handler saw is no more than the probes after the 100th
    assert ports[-1] <= 6000 - 100
