"""The runtime's events from a real instance (`xdpmon run`) on a veth pair (tests/netns.py):
an on-demand app enabled by its trigger on the frames sent and expired, enabled and
disabled by ctl, the kernel's alert, blocks added, removed and expired by their TTL, a
param set, the start and the stop; with a config, the events file moved as logrotate
moves it and reopened on SIGHUP, a hot deploy (`ctl add`) and a refused one. Exact
events, each valid by examples/events.schema.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from event_helpers import read_events
import test_hot_deploy
from test_run import ROOT, Running, frame_v4

pytestmark = [pytest.mark.kernel]
bpffs = test_hot_deploy.bpffs          # a bpffs of the test's own (the fixture)

SPEC = """app trig {
  t1 { select udp }
  t2 { n = count() window 1s }
  t3 { when n > param limit = 3 { enable det for 1s } }
}
app det {
  mode on_demand
  t1 { select udp }
  t2 { c = count() }
  t3 { when c > 0 { alert "seen" limit 1/s } }
}
"""
SIZES = "app sizes {\n  t1 { select ip }\n  t2 { big = max(pkt.len) }\n}\n"
BROKEN = "app broken {\n  t1 { select ip }\n  t2 { n = count() by ip.nosuchfield }\n}\n"


def ns_of(rfc3339: str) -> int:
    import calendar

    whole, frac = rfc3339.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) * 1_000_000_000 + int(frac)


def kinds(events) -> list[tuple[str, str]]:
    return [(e["app"], e["kind"]) for e in events]


def wait_for(path, pred, timeout: float = 15.0) -> list[dict]:
    """The events of ``path`` once ``pred(events)`` holds."""
    end = time.monotonic() + timeout
    while True:
        evs = read_events(path) if os.path.exists(path) else []
        if pred(evs) or time.monotonic() > end:
            return evs
        time.sleep(0.1)


def test_runtime_events_of_a_running_instance(veth_pair, tmp_path):
    spec = tmp_path / "od.mon"
    spec.write_text(SPEC)
    events = tmp_path / "events.jsonl"
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run")}
    r = Running(veth_pair, [str(spec), "-i", veth_pair.MON_IF, "--name", "ev", "--view", "none", "--interval", "200ms",
                            "--events", str(events), "--duration", "60s"], env)
    cenv = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def ctl(*args):
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "ev", *args], cwd=ROOT,
                           capture_output=True, text=True, env=cenv, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    try:
        assert veth_pair.send([frame_v4("198.18.250.9")] * 20) == 20       # n > 3 on the 4th: det on for 1 s
        evs = wait_for(events, lambda e: ("xdpmon", "app_disabled") in kinds(e))   # ran out, read within 200 ms
        ctl("enable", "det")
        ctl("disable", "det")
        ctl("block", "198.18.7.0/24", "--for", "1s", "--reason", "scan")
        ctl("block", "198.18.9.0/24", "--for", "1h")
        ctl("unblock", "198.18.9.0/24")
        evs = wait_for(events, lambda e: ("xdpmon", "block_expired") in kinds(e))
        ctl("set", "trig.limit", "5")
        stats = json.loads(ctl("stats"))["events"]
        written = len(read_events(events))
    finally:
        r.signal(signal.SIGTERM)
        code, _, err = r.finish()
    assert code == 0, err
    assert stats == {"to": str(events), "written": written, "failed": 0, "rotations": 0}
    evs = read_events(events)
    if kinds(evs[2:4]) == [("det", "alert"), ("xdpmon", "app_enabled")]:
        evs[2:4] = evs[3], evs[2]          # two apps' records, each told by its app's thread: either first
    assert kinds(evs) == [("xdpmon", "instance_started"), ("xdpmon", "attached"),
                          ("xdpmon", "app_enabled"), ("det", "alert"), ("xdpmon", "app_disabled"),
                          ("xdpmon", "app_enabled"), ("xdpmon", "app_disabled"),
                          ("xdpmon", "block_added"), ("xdpmon", "block_added"), ("xdpmon", "block_removed"),
                          ("xdpmon", "block_expired"), ("xdpmon", "param_set"),
                          ("xdpmon", "detached"), ("xdpmon", "instance_stopped")]
    st, att, en, alert, dis, en2, dis2, b1, b2, unb, exp, par, det, stop = evs
    assert {(e["host"], e["instance"], tuple(e["interfaces"])) for e in evs} == {
        (st["host"], "ev", (veth_pair.MON_IF,))}
    assert [e["interface"] for e in evs] == [None, veth_pair.MON_IF] + [None] * 10 + [veth_pair.MON_IF, None]
    f = st["fields"]
    assert (f["apps"], f["enforce"], f["config"], f["pid"] > 0, f["program_id"] == r.prog_id) == (
        ["trig", "det"], False, None, True, True)
    assert {k: att["fields"][k] for k in ("how", "program_id")} == {"how": "link", "program_id": r.prog_id}
    assert {k: en["fields"][k] for k in ("app", "cause", "by", "rule", "for_ns")} == {
        "app": "det", "cause": "trigger", "by": "rule:trig.r0", "rule": "trig.r0", "for_ns": 1_000_000_000}
    assert (alert["severity"], alert["fields"]["message"], alert["fields"]["rule"]) == ("warning", "seen", "det.r0")
    # the expiry: 1 s after the last of the 20 frames (each one past the 4th pushed the time further; on
    # the coarse clock the program reads, by a tick at most, often not at all)
    assert (dis["fields"]["cause"], dis["fields"]["by"]) == ("expired", None)
    assert 0 <= ns_of(dis["fields"]["changed_at"]) - ns_of(en["fields"]["until"]) < 500_000_000
    assert ns_of(en["fields"]["changed_at"]) + 1_000_000_000 == ns_of(en["fields"]["until"])
    assert (en2["fields"]["cause"], en2["fields"]["until"], dis2["fields"]["cause"]) == ("ctl", None, "ctl")
    assert [(e["fields"]["prefix"], e["fields"]["ttl_ns"], e["fields"]["reason"], e["fields"]["by"])
            for e in (b1, b2, unb, exp)] == [("198.18.7.0/24", 1_000_000_000, "scan", "ctl"),
                                             ("198.18.9.0/24", 3_600_000_000_000, "", "ctl"),
                                             ("198.18.9.0/24", unb["fields"]["ttl_ns"], "", "ctl"),
                                             ("198.18.7.0/24", 0, "scan", None)]
    assert 3_590_000_000_000 < unb["fields"]["ttl_ns"] < 3_600_000_000_000
    assert par["fields"] == {"app": "trig", "param": "limit", "value": 5, "by": "ctl"}
    assert (det["fields"]["error"], det["fields"]["program_id"]) == (None, r.prog_id)
    sf = stop["fields"]
    assert (sf["stopped_by"], sf["frames"], sf["events_written"], sf["events_failed"]) == ("SIGTERM", 20, 13, 0)
    assert alert["fields"]["ts_ns"] > 0
    assert veth_pair.xdp() is None


@pytest.mark.slow
def test_events_file_moved_and_reopened_on_sighup_and_a_hot_deploy(veth_pair, tmp_path, bpffs):
    (tmp_path / "od.mon").write_text(SPEC)
    events = tmp_path / "logs" / "events.jsonl"
    events.parent.mkdir()
    cfg = tmp_path / "xdpmon.yaml"
    cfg.write_text(f"name: hupev\nspecs: [od.mon]\ninterfaces: [{veth_pair.MON_IF}]\n"
                   f"outputs: {{events: logs/events.jsonl, events_max_size: 1Mi, events_keep: 2, view: none}}\n")
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run"), "XDPMON_BPFFS": str(bpffs)}
    r = Running(veth_pair, ["--config", str(cfg), "--interval", "200ms"], env)
    cenv = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def ctl(*args, ok=True):
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "hupev", *args], cwd=ROOT,
                           capture_output=True, text=True, env=cenv, timeout=180)
        assert (p.returncode == 0) == ok, p.stderr
        return p

    moved = tmp_path / "logs" / "events.jsonl.moved"
    try:
        ctl("block", "198.18.7.0/24", "--for", "1h")
        wait_for(events, lambda e: ("xdpmon", "block_added") in kinds(e))
        os.rename(events, moved)                          # logrotate: rename, then create (or not), then HUP
        r.signal(signal.SIGHUP)                           # with a config: reload, the file opened again
        end = time.monotonic() + 60
        while not events.exists() and time.monotonic() < end:   # opened again: created anew
            time.sleep(0.1)
        (tmp_path / "sizes.mon").write_text(SIZES)
        ctl("add", str(tmp_path / "sizes.mon"))
        (tmp_path / "broken.mon").write_text(BROKEN)
        assert ctl("add", str(tmp_path / "broken.mon"), ok=False).returncode == 2
        st = json.loads(ctl("status", "--json").stdout)
    finally:
        r.signal(signal.SIGTERM)
        code, _, err = r.finish()
    assert code == 0, err
    assert kinds(read_events(moved)) == [("xdpmon", "instance_started"), ("xdpmon", "attached"),
                                         ("xdpmon", "block_added")]
    evs = read_events(events)
    assert kinds(evs) == [("xdpmon", "deployed"), ("xdpmon", "deploy_refused"), ("xdpmon", "detached"),
                          ("xdpmon", "instance_stopped")]
    (swap,) = st["swaps"]
    assert evs[0]["fields"] == {"cmd": "add", "old_program_id": r.prog_id, "new_program_id": swap["new_prog_id"],
                                "apps_added": ["sizes"], "apps_removed": [], "apps_changed": [],
                                "apps_kept": ["trig", "det"], "took_ms": swap["timings_ms"]["total"],
                                "problems": []}
    assert evs[1]["fields"]["cmd"] == "add" and "broken.mon:3:" in evs[1]["fields"]["why"]
    assert evs[2]["fields"]["program_id"] == swap["new_prog_id"]
    assert evs[3]["fields"]["events_written"] == 6                      # 3 in the moved file, 3 here
    assert sorted(os.listdir(events.parent)) == ["events.jsonl", "events.jsonl.moved"]
