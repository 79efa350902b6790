"""`xdpmon run` on a veth pair between two network namespaces (tests/netns.py):
what it counts is exactly what was sent, and it leaves no program behind
however it stops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
XDPMON = [sys.executable, "-m", "runtime.cli"]
pytestmark = [pytest.mark.kernel]


def frame_v4(dst: str, payload: int = 20) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="198.18.200.2", dst=dst)
                 / UDP(sport=1000, dport=2000) / Raw(b"x" * payload))


def frame_v6(dst: str, payload: int = 20) -> bytes:
    from scapy.all import UDP, Ether, IPv6, Raw
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IPv6(src="2001:2::2", dst=dst)
                 / UDP(sport=1000, dport=2000) / Raw(b"x" * payload))


class Running:
    """An `xdpmon run` in the monitor namespace."""

    def __init__(self, pair, args: list[str], env: dict | None = None):
        self.pair = pair
        self.p = pair.run_in_monitor(XDPMON + ["run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})
        self.err_lines: list[str] = []
        self.prog_id = self._wait_attached()

    def _wait_attached(self, timeout: float = 60) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.p.stderr.readline()
            if not line:
                break
            self.err_lines.append(line)
            m = re.search(r"attached to \S+ .*program id (\d+)", line)
            if m:
                return int(m.group(1))
        self.p.kill()
        out, err = self.p.communicate()
        raise AssertionError("xdpmon run did not attach:\n" + "".join(self.err_lines) + err)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, out, "".join(self.err_lines) + err

    def signal(self, sig) -> None:
        # ip netns exec runs the command as its child: signal it, not `ip`
        kids = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True).stdout.split()
        for pid in kids or [str(self.p.pid)]:
            os.kill(int(pid), sig)


def prog_exists(prog_id: int) -> bool:
    from runtime.dataplane import libbpf
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except OSError:
        return False
    os.close(fd)
    return True


def final_of(out: str) -> dict:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    finals = [x for x in lines if x.get("type") == "final"]
    assert finals, out[-2000:]
    return finals[-1]


def test_counts_exactly_what_was_sent_and_detaches_at_duration(veth_pair):
    r = Running(veth_pair, ["specs/traffic_accounting.mon", "-i", "mon", "--json", "--interval", "500ms",
                            "--duration", "6s"])
    assert veth_pair.xdp() is not None and veth_pair.xdp()["prog"]["id"] == r.prog_id
    frames = [frame_v4("198.18.7.7")] * 30 + [frame_v4("198.18.7.8", 100)] * 12 + [frame_v6("2001:2::7")] * 5
    assert veth_pair.send(frames) == 47
    code, out, err = r.finish()
    assert code == 0, err
    fin = final_of(out)
    assert fin["stopped_by"] == "--duration"
    per_dst = {e["key"]["ip.dst"]: e["value"] for e in fin["apps"]["traffic_accounting"]["stats"]["per_dst"]}
    assert per_dst == {"198.18.7.7": {"packets": 30, "bytes": 30 * 62},
                       "198.18.7.8": {"packets": 12, "bytes": 12 * 142},
                       "2001:2::7": {"packets": 5, "bytes": 5 * 82}}
    assert fin["counters"]["frames"] == 47
    assert veth_pair.xdp() is None
    assert not prog_exists(r.prog_id)
    assert "stopped (--duration); detached; 47 frames seen" in err


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "exception"])
def test_every_way_out_leaves_no_program(veth_pair, how):
    env = {"XDPMON_INJECT_FAULT": "tick"} if how == "exception" else {}
    r = Running(veth_pair, ["specs/traffic_accounting.mon", "-i", "mon", "--view", "plain", "--interval",
                            "300ms", "--duration", "60s"], env)
    assert veth_pair.xdp()["prog"]["id"] == r.prog_id
    if how != "exception":
        r.signal(getattr(signal, how))
    code, out, err = r.finish()
    if how == "SIGKILL":                            # no way down ran: the kernel detached
        assert code != 0 and "stopped" not in err, (code, err)
    else:
        expected = {"SIGINT": 130, "SIGTERM": 0, "SIGHUP": 0, "exception": 70}[how]
        assert code == expected, err
        assert f"stopped ({how if how != 'exception' else 'RuntimeError'}" in err
    for _ in range(50):                             # the kernel releases a killed process's links at once
        if veth_pair.xdp() is None:
            break
        time.sleep(0.1)
    assert veth_pair.xdp() is None
    assert not prog_exists(r.prog_id)


def _eth():
    from scapy.all import Ether
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


def test_dns_flows_distinct_and_track_sizes_exact(veth_pair):
    from scapy.all import DNS, DNSQR, IP, TCP, UDP
    q = [bytes(_eth() / IP(src="198.18.200.2", dst="198.18.7.53") / UDP(sport=5353, dport=53)
               / DNS(id=i, rd=1, qd=DNSQR(qname="a.example."))) for i in range(3)]
    resp = [bytes(_eth() / IP(src="198.18.7.53", dst="198.18.200.2") / UDP(sport=53, dport=5353)
                  / DNS(id=i, qr=1, rcode=rc, qd=DNSQR(qname="a.example."))) for i, rc in ((0, 0), (1, 3))]
    syns = [bytes(_eth() / IP(src="198.18.200.3", dst="198.18.7.80") / TCP(sport=40000 + i, dport=80, flags="S"))
            for i in range(5)]
    acks = [bytes(_eth() / IP(src="198.18.200.3", dst="198.18.7.80") / TCP(sport=40000 + i, dport=80, flags="A"))
            for i in range(2)]
    scan = [bytes(_eth() / IP(src="198.18.201.1", dst="198.18.7.9") / TCP(sport=999, dport=1000 + p, flags="S"))
            for p in range(40)]
    r = Running(veth_pair, ["specs/dns_flows.mon", "specs/half_open_tcp.mon", "specs/port_scan.mon", "-i", "mon",
                            "--json", "--view", "none", "--interval", "500ms", "--duration", "5s"])
    frames = q + resp + syns + acks + scan
    assert veth_pair.send(frames) == len(frames)
    code, out, err = r.finish()
    assert code == 0, err
    fin = final_of(out)
    apps = fin["apps"]
    flows = {(e["key"]["ip.src"], e["key"]["udp.sport"]): e["value"] for e in apps["dns_flows"]["stats"]["flows"]}
    assert set(flows) == {("198.18.200.2", 5353), ("198.18.7.53", 53)}
    assert (flows[("198.18.200.2", 5353)]["count"], flows[("198.18.200.2", 5353)]["sum_pkt_len"]) == (3, 3 * len(q[0]))
    assert (flows[("198.18.7.53", 53)]["count"], flows[("198.18.7.53", 53)]["sum_pkt_len"]) == (2, 2 * len(resp[0]))
    for v in flows.values():
        assert 0 < v["first"] <= v["last"]                 # kernel times (CLOCK_MONOTONIC ns)
    assert {e["key"]["dns.rcode"]: e["value"]["count"] for e in apps["dns_flows"]["stats"]["rcodes"]} == {0: 1, 3: 1}
    pending = apps["half_open_tcp"]["stats"]["pending"]
    assert pending["size"] == 3 + 40                    # the scan's SYNs are half-open handshakes too
    assert sorted(e["key"]["tcp.sport"] for e in pending["open"] if e["key"]["ip.src"] == "198.18.200.3") == \
        [40002, 40003, 40004]
    (entry,) = [e for e in apps["port_scan"]["stats"]["ports"] if e["key"]["ip.src"] == "198.18.201.1"]
    seen = max(entry["value"]["distinct"], entry["last_window"]["distinct"])   # a 10 s window
    assert 38 <= seen <= 42                               # HyperLogLog, linear counting at this size
    assert fin["counters"]["frames"] == len(frames)
