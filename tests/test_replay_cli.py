"""`xdpmon replay` end to end: captures in, snapshot out, in the kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dpkt
import pytest

from examples.traffic import generators as g

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p) for p in (ROOT / "specs").glob("*.mon"))


def xdpmon(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def write(path: Path, frames, linktype=dpkt.pcap.DLT_EN10MB, ng=False):
    with open(path, "wb") as f:
        if ng:
            w = dpkt.pcapng.Writer(f, linktype=linktype)
        else:
            w = dpkt.pcap.Writer(f, nano=True, linktype=linktype)
        for ts, data in frames:
            w.writepkt(data, ts=float(Decimal(ts) / 10**9) if ng else Decimal(ts) / 10**9)
    return path


@pytest.fixture(scope="module")
def frames():
    return g.mixed(seed=3)[:400]


def test_json_snapshot(tmp_path, frames):
    cap = write(tmp_path / "mixed.pcap", frames)
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert set(snap) == {"apps", "counters", "events", "replay"}
    assert snap["counters"]["frames"] == 400 and snap["counters"]["verdict.pass"] == 400
    assert snap["replay"] == {"frames": 400, "refused": 0, "refused_by": {}, "cut": 0, "backwards": 0,
                              "engine": "kernel"}
    acc = snap["apps"]["traffic_accounting"]
    assert acc["enabled"] is True and acc["params"] == {}
    # every IP frame is counted once per destination: all frames but the non-IP ones
    total = sum(e["value"]["packets"] for e in acc["stats"]["per_dst"])
    assert total == 400 - snap["counters"]["parse.non_ip"]
    assert snap["apps"]["syn_flood"]["enabled"] is False
    assert all(isinstance(e["key"]["ip.dst"], str) for e in acc["stats"]["per_dst"])


def test_pcapng_gives_the_same_snapshot(tmp_path, frames):
    a = xdpmon("replay", *SPECS, "--pcap", str(write(tmp_path / "a.pcap", frames)), "--json")
    b = xdpmon("replay", *SPECS, "--pcap", str(write(tmp_path / "b.pcapng", frames, ng=True)), "--json")
    assert a.returncode == b.returncode == 0
    sa, sb = json.loads(a.stdout), json.loads(b.stdout)
    # pcapng timestamps here are microseconds: compare what does not depend on them
    assert sa["counters"] == sb["counters"]
    assert sa["apps"]["traffic_accounting"] == sb["apps"]["traffic_accounting"]


def test_other_link_type_is_refused(tmp_path):
    cap = write(tmp_path / "raw.pcap", [(0, bytes(20))], linktype=101)
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 1
    assert "link type 101 (raw IP) is not Ethernet" in r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_capture_processes_what_is_readable(tmp_path, frames):
    cap = write(tmp_path / "cut.pcap", frames[:10])
    data = cap.read_bytes()
    cap.write_bytes(data[: len(data) - 30])          # cut into the last record
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 1
    assert "stopped after frame 9" in r.stderr and "truncated or corrupt" in r.stderr
    assert json.loads(r.stdout)["counters"]["frames"] == 9


def test_not_a_capture(tmp_path):
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(b"this is not a capture file at all")
    r = xdpmon("replay", *SPECS, "--pcap", str(bad))
    assert r.returncode == 1 and "not a pcap or pcapng file" in r.stderr and "Traceback" not in r.stderr


def test_runt_frames_are_counted_not_run(tmp_path, frames):
    cap = write(tmp_path / "runt.pcap", [(0, b"\x01" * 10)] + frames[:5])
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    snap = json.loads(r.stdout)
    assert snap["replay"] == {"frames": 6, "refused": 1, "refused_by": {"short": 1}, "cut": 0, "backwards": 0,
                              "engine": "kernel"}
    assert snap["counters"]["frames"] == 5 and snap["counters"]["replay.refused"] == 1
    assert snap["counters"]["replay.refused.short"] == 1 and snap["counters"]["replay.refused.oversize"] == 0


def test_tables_and_asl(tmp_path):
    cap = write(tmp_path / "scan.pcap", g.port_scan(300, seed=1))
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--asl")
    assert r.returncode == 0, r.stderr
    assert "port_scan" in r.stdout and "600 frames replayed through the kernel engine" in r.stdout
    emitted = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    # past 100 distinct ports the kernel sends probes at up to 100/s: a burst of 100,
    # then one every 10 ms of the scan's remaining 100 ms
    assert {"app": "port_scan", "event": "scanner_summary", "source": "198.18.66.6", "ports": 110, "hosts": 1} \
        in emitted
