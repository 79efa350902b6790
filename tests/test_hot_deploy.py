"""Apps added, removed and changed in a running instance (runtime/deploy/), on a veth
pair with traffic flowing all the while: nothing counted is lost or doubled, the
interface always has a program, a failing change leaves everything as it was, and the
instance's pins are gone when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from netns import ProgramWatch
from test_run import ROOT, Running

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

DST = "198.18.250.77"          # not an address of the monitor: its kernel answers nothing

ACCT = """app acct {
  t1 { select ip }
  t2 { per_dst = count() as packets by ip.dst size 1024 }
  t3 { when pkt.len > 0 { send packet(ip.dst) to asl limit 20/s } }
  asl "handler.py"
}
"""
ACCT_CHANGED = """app acct {
  t1 { select ip }
  t2 { per_dst = count() as packets, sum(pkt.len) as bytes by ip.dst size 1024 }
  t3 { when pkt.len > 0 { send packet(ip.dst) to asl limit 20/s } }
  asl "handler.py"
}
"""
WATCH = """app watch {
  mode on_demand
  t1 { select udp }
  t2 { by_port = count() by udp.dport size 256 }
  t3 { when by_port > param limit = 5 { alert "many" limit 1/s } }
}
"""
SIZES = """app sizes {
  t1 { select ip }
  t2 { per_dst = count() as packets, max(pkt.len) as big by ip.dst size 1024 }
  t3 { when pkt.len > 0 { send packet(ip.dst) to asl limit 20/s } }
  asl "handler.py"
}
"""
BIG = """app big {
  t1 { select ip }
  t2 { flows = count() by (ip.src, ip.dst, udp.sport, udp.dport) size 16777216 }
}
"""
BROKEN = """app broken {
  t1 { select ip }
  t2 { n = count() by ip.nosuchfield }
}
"""
FAULTY = """app faulty {
  t1 { select udp }
  t2 { n = count() by udp.sport size 64 }
}
"""
HANDLER = """class Handler:
    def __init__(self, ctx):
        self.ctx, self.packets = ctx, 0

    def on_start(self):
        self.ctx.emit("started", handler=id(self))

    def on_packet(self, event):
        self.packets += 1

    def on_stop(self):
        self.ctx.emit("stopped", handler=id(self), packets=self.packets)


HANDLER = Handler
"""


def mac_of(pair) -> str:
    from netns import sh
    return json.loads(sh("ip", "-n", pair.mon_ns, "-j", "link", "show", pair.MON_IF).stdout)[0]["address"]


class Traffic:
    """UDP frames from the peer to DST at a steady rate until stopped (the generator of
    runtime/traffic/: live frames, or its transmit ring where the kernel refuses them)."""

    def __init__(self, pair, rate: int = 20_000):
        from runtime.traffic import frames as F
        from runtime.traffic.livegen import open_generator

        t = F.build("udp", pair.peer_addr, DST, dst_mac=mac_of(pair))
        self.gen = open_generator(t, pair.PEER_IF, pair.peer_ns)
        self.rate, self.stop_ = rate, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_.is_set():
            self.gen.send(self.rate // 10, self.rate)

    def stop(self) -> int:
        self.stop_.set()
        self.thread.join(timeout=30)
        n = self.gen.frames_sent()
        self.gen.close()
        return n


@pytest.fixture
def bpffs(tmp_path):
    d = tmp_path / "bpffs"
    d.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(d)], check=True)
    yield d
    subprocess.run(["umount", str(d)], check=False)


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_add_remove_change_and_a_failing_add_under_traffic(veth_pair, tmp_path, bpffs):
    write(tmp_path, "handler.py", HANDLER)
    acct = write(tmp_path, "acct.mon", ACCT)
    watch = write(tmp_path, "watch.mon", WATCH)
    events = tmp_path / "events.jsonl"
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run"), "XDPMON_BPFFS": str(bpffs),
           "XDPMON_INJECT_FAULT": "swap:prepare:faulty"}
    r = Running(veth_pair, [acct, watch, "-i", veth_pair.MON_IF, "--name", "hot", "--view", "none",
                            "--interval", "200ms", "--events", str(events), "--memory-budget", "256Mi"], env)
    cenv = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def ctl(*args, ok=True):
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "hot", *args], cwd=ROOT,
                           capture_output=True, text=True, env=cenv, timeout=180)
        if ok:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    def status():
        return json.loads(ctl("status", "--json").stdout)

    def pins():
        return sorted(os.listdir(bpffs / "xdpmon" / "hot"))

    try:
        ctl("set", "watch.limit", "77")
        ctl("enable", "watch")
        ctl("block", "198.18.99.0/24", "--for", "1h", "--reason", "kept")
        blocks = [{**b, "hits": 0, "ttl_left_ns": 0} for b in json.loads(ctl("blocks", "--json").stdout)]
        first = status()["program"]["id"]
        traffic = Traffic(veth_pair)
        watcher = ProgramWatch(veth_pair)
        time.sleep(1.0)
        asl_before = status()["asl"]["acct"]["delivered"]
        assert asl_before > 0

        # a dry run changes nothing
        plan = ctl("plan", "add", write(tmp_path, "sizes.mon", SIZES))
        assert "apps added:     sizes" in plan.stdout and "slots added:" in plan.stdout
        assert status()["program"]["id"] == first

        # add an app that shares acct's map (a schema change: a slot more)
        out = ctl("add", str(tmp_path / "sizes.mon")).stdout
        assert "maps migrated (kept slots copied)" in out and "swapped: program" in out
        st = status()
        assert st["program"]["apps"] == ["acct", "watch", "sizes"]
        assert st["asl"]["acct"]["delivered"] >= asl_before       # the same handler, counting on
        time.sleep(0.5)

        # remove it again
        ctl("remove", "sizes")
        assert status()["program"]["apps"] == ["acct", "watch"]
        time.sleep(0.5)

        # change acct's statistic and reload
        (tmp_path / "acct.mon").write_text(ACCT_CHANGED)
        out = ctl("reload").stdout
        assert "apps changed:   acct" in out
        time.sleep(0.5)

        # failing adds: each refused with its reason, exit 2, everything as it was
        before = (status()["program"], pins())
        bad = ctl("add", write(tmp_path, "broken.mon", BROKEN), ok=False)
        assert bad.returncode == 2 and "broken.mon:3:" in bad.stderr and "^" in bad.stderr
        bad = ctl("add", write(tmp_path, "big.mon", BIG), ok=False)
        assert bad.returncode == 2 and "memory" in bad.stderr and "nothing changed" in bad.stderr
        bad = ctl("add", write(tmp_path, "faulty.mon", FAULTY), ok=False)
        assert bad.returncode == 2 and "fault injected" in bad.stderr and "untouched" in bad.stderr
        assert (status()["program"], pins()) == before
        time.sleep(0.5)

        sent = traffic.stop()
        watcher.stop()
        time.sleep(0.5)
        stats = json.loads(ctl("stats").stdout)
        st = status()
        blocks_after = [{**b, "hits": 0, "ttl_left_ns": 0} for b in json.loads(ctl("blocks", "--json").stdout)]
    finally:
        if r.p.poll() is None:
            r.signal(signal.SIGTERM)
        rc, _, err = r.finish()

    assert sent > 20_000
    rows = {e["key"]["ip.dst"]: e["value"] for e in stats["apps"]["acct"]["stats"]["per_dst"]}
    assert rows[DST]["packets"] == sent                       # none lost, none doubled, over four swaps
    assert 0 < rows[DST]["bytes"] < sent * 60 and rows[DST]["bytes"] % 60 == 0     # counted since the reload
    assert stats["counters"]["frames"] == sent
    assert stats["interfaces"][veth_pair.MON_IF]["frames"] == sent      # the per-interface counter too
    assert blocks_after == blocks                                        # the blocklist entry, as it was
    assert stats["counters"]["parse.ok"] == sent
    watch_ports = {e["key"]["udp.dport"]: e["value"]["count"] for e in stats["apps"]["watch"]["stats"]["by_port"]}
    assert watch_ports == {9: sent}
    assert st["params"]["watch"] == {"limit": 77} and st["enabled"]["watch"]["enabled"] is True
    assert [s["cmd"] for s in st["swaps"]] == ["add", "remove", "reload"]
    # the interface always had a program: the first, then each swap's
    assert watcher.none == 0 and watcher.polls > 1000
    assert watcher.ids == [first] + [s["new_prog_id"] for s in st["swaps"]]
    assert rc == 0, err
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [(e["app"], e["kind"]) for e in evs if e["kind"] in ("started", "stopped")]
    # acct's handler ran from start to stop (its object kept through the swaps, until the
    # reload changed the app); sizes' got on_stop() when it was removed
    assert kinds == [("acct", "started"), ("sizes", "started"), ("sizes", "stopped"), ("acct", "stopped"),
                     ("acct", "started"), ("acct", "stopped")]
    assert not (bpffs / "xdpmon").exists()


def test_sighup_deploys_the_configs_new_specs(veth_pair, tmp_path, bpffs):
    acct = write(tmp_path, "acct.mon", ACCT.replace('  asl "handler.py"\n', ""))
    write(tmp_path, "watch.mon", WATCH)
    cfg = tmp_path / "xdpmon.yaml"
    cfg.write_text(f"name: hup\nspecs: [acct.mon]\ninterfaces: [{veth_pair.MON_IF}]\n"
                   f"params: {{}}\noutputs: {{view: none}}\n")
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run"), "XDPMON_BPFFS": str(bpffs)}
    r = Running(veth_pair, ["--config", str(cfg), "--interval", "200ms"], env)
    cenv = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def status():
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "hup", "status", "--json"],
                           cwd=ROOT, capture_output=True, text=True, env=cenv, timeout=30)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    try:
        assert status()["program"]["apps"] == ["acct"]
        cfg.write_text(cfg.read_text().replace("specs: [acct.mon]", "specs: [acct.mon, watch.mon]")
                       .replace("params: {}", "params: {watch: {limit: 9}}"))
        r.signal(signal.SIGHUP)
        end = time.monotonic() + 60
        while time.monotonic() < end and status()["program"]["apps"] != ["acct", "watch"]:
            time.sleep(0.2)
        st = status()
        assert st["program"]["apps"] == ["acct", "watch"] and st["params"]["watch"] == {"limit": 9}
        assert st["specs"] == [acct, str(tmp_path / "watch.mon")]
        # ctl reload reads the config again too: a param only, so nothing to swap
        cfg.write_text(cfg.read_text().replace("limit: 9", "limit: 11"))
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "hup", "reload"], cwd=ROOT,
                           capture_output=True, text=True, env=cenv, timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines() == ["nothing changed: the new program is the running one (not swapped)",
                                         f"reloaded {cfg}: applied params"]
        assert status()["params"]["watch"] == {"limit": 11}
        st = status()
        # a config whose specs have an error: refused, the running program kept
        cfg.write_text(cfg.read_text().replace("watch.mon]", "watch.mon, nope.mon]"))
        r.signal(signal.SIGHUP)
        time.sleep(3)
        assert status()["program"] == st["program"]
    finally:
        r.signal(signal.SIGTERM)
        rc, _, err = r.finish()
    assert rc == 0, err
    assert "xdpmon: reload: swapped: program" in err
    assert "nope.mon" in err and "reload refused: the config has errors; nothing changed" in err
    assert not (bpffs / "xdpmon").exists()


def test_a_swap_that_fails_on_the_last_interface_puts_the_old_program_back(veth_pair, tmp_path, bpffs):
    import socket

    from netns import sh

    from runtime.dataplane.attach import present
    from runtime.traffic.netns import in_netns

    sh("ip", "-n", veth_pair.mon_ns, "link", "add", "d0", "type", "veth", "peer", "name", "d0p")
    for dev in ("d0", "d0p"):
        sh("ip", "-n", veth_pair.mon_ns, "link", "set", dev, "up")
    acct = write(tmp_path, "acct.mon", ACCT.replace('  asl "handler.py"\n', ""))
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run"), "XDPMON_BPFFS": str(bpffs),
           "XDPMON_INJECT_FAULT": "swap:swap:faulty"}
    r = Running(veth_pair, [acct, "-i", veth_pair.MON_IF, "-i", "d0", "--name", "two", "--view", "none"], env)
    cenv = {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    def programs():
        with in_netns(veth_pair.mon_ns):
            return [present(socket.if_nametoindex(n))[0] for n in (veth_pair.MON_IF, "d0")]

    try:
        first = programs()
        assert first == [r.prog_id, r.prog_id]
        pins = sorted(os.listdir(bpffs / "xdpmon" / "two"))
        watcher = ProgramWatch(veth_pair)
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "two", "add",
                            write(tmp_path, "faulty.mon", FAULTY)], cwd=ROOT, capture_output=True, text=True,
                           env=cenv, timeout=180)
        assert p.returncode == 2 and "fault injected by XDPMON_INJECT_FAULT=swap:swap:faulty" in p.stderr
        watcher.stop()
        assert programs() == first                        # mon was swapped, then put back
        assert watcher.ids[0] == watcher.ids[-1] == first[0] and watcher.none == 0 and len(watcher.ids) in (1, 3)
        n = veth_pair.send([bytes.fromhex("020000000001020000000002") + bytes.fromhex("0800")
                            + bytes.fromhex("4500001c0001000040110000c612fa4dc612fa4d") + bytes(8)] * 50)
        time.sleep(0.3)
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "two", "stats", "acct"],
                           cwd=ROOT, capture_output=True, text=True, env=cenv, timeout=60)
        rows = {e["key"]["ip.dst"]: e["value"]["packets"] for e in json.loads(p.stdout)["stats"]["per_dst"]}
        assert n == 50 and rows == {"198.18.250.77": 50}
        p = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "two", "status", "--json"],
                           cwd=ROOT, capture_output=True, text=True, env=cenv, timeout=60)
        st = json.loads(p.stdout)
        assert st["program"]["apps"] == ["acct"] and st["swaps"] == []
        assert sorted(os.listdir(bpffs / "xdpmon" / "two")) == pins     # the new program's pins removed
    finally:
        r.signal(signal.SIGTERM)
        rc, _, err = r.finish()
    assert rc == 0, err
    assert not (bpffs / "xdpmon").exists()
