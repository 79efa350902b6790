"""``xdpmon demo`` live (runtime/demo/): a short run on its own veth pair, as an operator
runs it. The flood is found, named and timed; --enforce drops it and no benign frame;
the capture it writes replays to the same detections; Ctrl-C and the end leave nothing
behind. And the parts that need no kernel: the scenario's checks and the computed moment
a flood passes a per-window threshold."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.demo.scenario import S, Scenario, ScenarioError, crossing_ns, parse_rate

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--duration", "8s", "--attack-at", "2s", "--attack-for", "3s", "--rate", "50k", "--view", "plain"]


def demo(tmp_path, *args, timeout=180):
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "demo", *SHORT, "--out", str(tmp_path), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return r, (json.loads((tmp_path / "demo-timeline.json").read_text())
               if (tmp_path / "demo-timeline.json").exists() else None)


def nothing_left(pid: int | None = None) -> None:
    from runtime.traffic.veth import namespaces
    assert [ns for ns in namespaces() if ns.startswith("xdpmon-demo")] == []
    if pid is not None:
        assert not os.path.exists(f"/run/xdpmon/demo-{pid}.sock")


@pytest.mark.kernel
@pytest.mark.slow
def test_the_flood_is_detected_on_demand_and_timed(kernel, tmp_path):
    r, tl = demo(tmp_path, "--write-pcap", str(tmp_path / "demo.pcap"))
    assert r.returncode == 0, r.stderr[-3000:]
    v = tl["verdicts"]
    assert v == {"detected": True, "victim_identified": True, "latency_ok": True, "end_reported_within_2s": True,
                 "false_alarms": 0, "benign_dropped": 0}
    assert tl["flood_sent"] == 150_000 and tl["frames_seen"] == tl["frames_sent"] == 150_000 + tl["benign_sent"]
    # the order of things: the flood, then (within a tick of the coarse clock) the enable, the
    # first record, the report; the end reported after the flood's end
    assert abs(tl["flood_first_s"] - 2.0) < 0.05 and abs(tl["flood_last_s"] - 5.0) < 0.1
    assert tl["enabled_signal"] == "syns_per_destination"
    assert tl["flood_first_s"] - 0.005 <= tl["enabled_s"] <= tl["first_record_s"] <= tl["reported_s"]
    assert 0 <= tl["latency_s"] <= 1.0 and tl["victim_found"] == "198.19.0.80" and tl["spoofed"] is True
    assert tl["flood_last_s"] < tl["ended_reported_s"] <= tl["flood_last_s"] + 2.0
    assert tl["blocked"] == [] and tl["dropped"] == 0
    nothing_left()
    # the capture of what was sent, replayed, gives the same detections
    events = [json.loads(line) for line in (tmp_path / "demo-events.jsonl").read_text().splitlines()]
    live = [(e["app"], e["kind"], e["fields"].get("victim")) for e in events if e["app"] in ("syn_flood", "flow_watch")]
    rep = subprocess.run([sys.executable, "-m", "runtime.cli", "replay", *sorted(str(p) for p in (ROOT / "specs").glob("*.mon")),
                          "--pcap", str(tmp_path / "demo.pcap"), "--asl", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    out = json.loads(rep.stdout)
    replayed = [(e["app"], e["kind"], e["fields"].get("victim")) for e in out["asl_events"]
                if e["app"] in ("syn_flood", "flow_watch")]
    # (live, each app's handler is a thread of its own: the order across apps is the threads')
    expected = [("flow_watch", "enabled", None), ("syn_flood", "attack_started", "198.19.0.80"),
                ("syn_flood", "attack_ended", "198.19.0.80")]
    assert replayed == expected and sorted(live, key=str) == sorted(expected, key=str)
    assert [k for a, k, _ in live if a == "syn_flood"] == ["attack_started", "attack_ended"]
    assert out["counters"]["frames"] == tl["frames_sent"]
    base = 1_767_225_600 * S + tl["t0_ns"] % S
    (en,) = [e for e in out["asl_events"] if e["kind"] == "enabled"]
    assert abs((en["fields"]["at_ns"] - base) / S - tl["enabled_s"]) < 0.01     # the coarse clock's tick, at most


@pytest.mark.kernel
@pytest.mark.slow
def test_enforce_drops_the_flood_and_no_benign_frame(kernel, tmp_path):
    r, tl = demo(tmp_path, "--enforce")
    assert r.returncode == 0, r.stderr[-3000:]
    assert tl["verdicts"]["detected"] and tl["verdicts"]["benign_dropped"] == 0
    flood_net = ipaddress.ip_network("198.19.128.0/20")
    assert tl["blocked"] and all(ipaddress.ip_network(p).subnet_of(flood_net) for p in tl["blocked"])
    assert "198.19.128.0/20" in tl["blocked"]
    # most of the flood is dropped: all but what came before the block reached the whole /20
    # (it widens with the records from sources outside it, at most 1,000 a second)
    assert 0.5 * tl["flood_sent"] < tl["dropped"] < tl["flood_sent"]
    assert tl["benign_in_blocked"] == 0 and tl["frames_seen"] == tl["frames_sent"]
    events = [json.loads(line) for line in (tmp_path / "demo-events.jsonl").read_text().splitlines()]
    (ended,) = [e["fields"] for e in events if e["kind"] == "attack_ended"]
    assert ended["blocked_hits"] == tl["dropped"]        # the blocks' hits: what the program dropped
    nothing_left()


@pytest.mark.kernel
@pytest.mark.slow
def test_ctrl_c_tears_everything_down(kernel, tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "runtime.cli", "demo", *SHORT, "--out", str(tmp_path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:                # until the flood is on
            if os.path.exists(f"/run/xdpmon/demo-{p.pid}.sock") and any(
                    ns.startswith(f"xdpmon-demo{p.pid}") for ns in _ns()):
                break
            time.sleep(0.2)
        time.sleep(3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err[-2000:]
    assert "stopped: interrupted (Ctrl-C)" in err and "torn down" in err
    nothing_left(p.pid)
    assert not (tmp_path / "demo-timeline.json").exists()


def _ns():
    from runtime.traffic.veth import namespaces
    return namespaces()


def test_the_scenario_is_checked():
    with pytest.raises(ScenarioError, match="must end within --duration 60 s"):
        Scenario(attack_at_s=50, attack_for_s=20)
    with pytest.raises(ScenarioError, match="--rate must be 1k..2,000k SYN/s, not 500"):
        Scenario(rate_pps=500)
    with pytest.raises(ScenarioError, match="is not a rate"):
        parse_rate("fast")
    assert (parse_rate("200k"), parse_rate("1.5M"), parse_rate("50000")) == (200_000, 1_500_000, 50_000)
    assert Scenario().flood_frames == 4_000_000 and Scenario().flood_sources == 4096


def test_when_a_flood_passes_a_threshold():
    # 1,000 frames/s... at 200k/s the 1,001st frame is 5 ms in, in the same window
    assert crossing_ns(10 * S + 100_000_000, 200_000, 1000) == 10 * S + 100_000_000 + 5_000_000
    # starting 2 ms before a window ends: the window restarts the count; the 1,001st of the next
    assert crossing_ns(11 * S - 2_000_000, 200_000, 1000) == 11 * S + 5_000_000
    # at exactly the threshold's rate a window never passes it: refused
    with pytest.raises(ValueError):
        crossing_ns(0, 1000, 1000)


def test_demo_without_root_explains_and_falls_back(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from runtime.cli import demo_cmd

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(demo_cmd, "_replay_demo", lambda: 0)
    r = CliRunner().invoke(demo_cmd.demo, ["--duration", "5s", "--attack-at", "1s", "--attack-for", "1s"])
    assert r.exit_code == 0
    assert "needs root" in r.output and "replay demo instead" in r.output


@pytest.mark.kernel
@pytest.mark.slow
def test_an_error_mid_run_is_said_and_everything_removed(kernel, tmp_path):
    """A fault in the run loop (XDPMON_INJECT_FAULT=tick: the first reading raises): the
    demo says why, exits 1 and leaves nothing behind."""
    env = dict(os.environ, XDPMON_INJECT_FAULT="tick")
    p = subprocess.run([sys.executable, "-m", "runtime.cli", "demo", *SHORT, "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "stopped: RuntimeError: fault injected by XDPMON_INJECT_FAULT=tick" in p.stderr
    assert "torn down: namespaces, veth pair, XDP program and control socket removed" in p.stderr
    nothing_left()
    assert not (tmp_path / "demo-timeline.json").exists()
