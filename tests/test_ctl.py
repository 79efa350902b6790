"""`xdpmon ctl` against a running instance on a veth pair: params and enable bits
change what the program counts at once; bad names and values are refused with
their message; the socket is root's alone and goes with the instance."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_run import ROOT, Running, final_of

pytestmark = [pytest.mark.kernel]

SPEC = """app od {
  mode on_demand
  t1 { select tcp.syn and not tcp.ack }
  t2 { syns = count() by ip.dst }
  t3 { when syns > param per_dst = 1000 { send packet(ip.src) to asl limit 10/s } }
}
"""


def syn(dst="198.18.50.1"):
    from scapy.all import IP, TCP, Ether
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="198.18.200.2", dst=dst)
                 / TCP(sport=1234, dport=80, flags="S"))


@pytest.fixture
def instance(veth_pair, tmp_path):
    spec = tmp_path / "od.mon"
    spec.write_text(SPEC)
    run_dir = tmp_path / "run"
    env = {"XDPMON_RUN_DIR": str(run_dir)}
    r = Running(veth_pair, [str(spec), "-i", "mon", "--name", "t1", "--view", "none", "--interval", "200ms",
                            "--duration", "60s"], env)
    r.run_dir = run_dir
    r.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    yield r
    if r.p.poll() is None:
        r.signal(signal.SIGTERM)
        r.finish()


def ctl(r, *args):
    return subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", *args], cwd=ROOT, capture_output=True,
                          text=True, env=r.env, timeout=30)


def syns(r) -> dict:
    out = ctl(r, "--name", "t1", "stats", "od")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    return {e["key"]["ip.dst"]: e["value"]["count"] for e in st["stats"]["syns"]}


def test_set_enable_disable_at_once(instance, veth_pair):
    r = instance
    out = ctl(r, "--name", "t1", "set", "od.per_dst", "2k")
    assert (out.returncode, out.stdout) == (0, "od.per_dst = 2,000\n"), out.stderr
    assert json.loads(ctl(r, "stats", "od").stdout)["params"] == {"per_dst": 2000}   # the only instance
    veth_pair.send([syn()] * 10)                       # off: not counted
    assert syns(r) == {}
    assert ctl(r, "enable", "od").stdout == "od: enabled until disabled\n"
    veth_pair.send([syn()] * 7)
    assert syns(r) == {"198.18.50.1": 7}
    assert ctl(r, "disable", "od").stdout == "od: disabled\n"
    veth_pair.send([syn()] * 5)
    assert syns(r) == {"198.18.50.1": 7}
    out = ctl(r, "enable", "od", "--for", "30s")
    assert out.stdout == "od: enabled for 30s\n"
    st = json.loads(ctl(r, "status", "--json").stdout)
    assert st["enabled"]["od"]["enabled"] is True and st["enabled"]["od"]["until_ns"] is not None
    assert [i["name"] for i in st["interfaces"]] == ["mon"]


@pytest.mark.parametrize("args, message", [
    (["set", "od.nosuch", "1"], "xdpmon ctl: app 'od' has no param 'nosuch' (its params: per_dst)\n"),
    (["set", "nosuch.per_dst", "1"], "xdpmon ctl: no app 'nosuch' in this program (apps: od)\n"),
    (["set", "od.per_dst", "2x"], "xdpmon ctl: unknown unit 'x' in od.per_dst (a count takes k, M, G (powers of "
                                  "1000) or Ki, Mi, Gi (powers of 1024); a duration ns, us, ms, s, m (or min), h, d)\n"),
    (["set", "od", "1"], "xdpmon ctl: 'od' is not APP.PARAM (e.g. syn_flood.per_dst)\n"),
    (["enable", "od", "--for", "30"], "xdpmon ctl: --for needs a unit (write e.g. 30s or 30ms (ns, us, ms, s, "
                                      "m (or min), h, d))\n"),
    (["stats", "zz"], "xdpmon ctl: no app 'zz' in this program (apps: od)\n"),
])
def test_refused_with_the_reason(instance, args, message):
    out = ctl(instance, "--name", "t1", *args)
    assert (out.returncode, out.stderr) == (2, message)


def test_no_such_instance(instance):
    out = ctl(instance, "--name", "nope", "status")
    assert out.returncode == 1
    assert out.stderr == (f"xdpmon ctl: no xdpmon instance named 'nope' answers at {instance.run_dir}/nope.sock "
                          f"(running: t1)\n")


def test_socket_is_roots_and_speaks_json_lines(instance):
    path = instance.run_dir / "t1.sock"
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(instance.run_dir.stat().st_mode) == 0o700
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b'not json\n{"cmd": "frobnicate"}\n{"cmd": "set", "app": "od"}\n{"cmd": "blocks"}\n')
        f = s.makefile()
        answers = [json.loads(f.readline()) for _ in range(4)]
    assert answers[0]["ok"] is False and answers[0]["error"].startswith("not JSON: ")
    assert answers[1] == {"ok": False, "error": "unknown command 'frobnicate' (commands: status, stats, enable, "
                                                "disable, set, block, unblock, blocks, plan, add, remove, reload)"}
    assert answers[2] == {"ok": False, "error": "bad arguments for 'set': 'param'"}
    assert answers[3] == {"ok": True, "blocks": []}


def test_socket_goes_with_the_instance_and_a_stale_one_is_replaced(instance, veth_pair, tmp_path):
    instance.signal(signal.SIGTERM)
    code, _, err = instance.finish()
    assert code == 0, err
    path = instance.run_dir / "t1.sock"
    assert not path.exists()
    with socket.socket(socket.AF_UNIX) as s:          # a socket file nobody answers on
        s.bind(str(path))
    again = Running(veth_pair, [str(tmp_path / "od.mon"), "-i", "mon", "--name", "t1", "--view", "none",
                                "--duration", "60s"], {"XDPMON_RUN_DIR": str(instance.run_dir)})
    try:
        assert ctl(instance, "--name", "t1", "status").returncode == 0
        dup = subprocess.run(["ip", "netns", "exec", veth_pair.mon_ns, sys.executable, "-m", "runtime.cli", "run",
                              str(tmp_path / "od.mon"), "-i", "lo", "--name", "t1", "--duration", "5s"],
                             cwd=ROOT, capture_output=True, text=True, env=instance.env, timeout=60)
        assert dup.returncode == 2
        assert (f"an xdpmon instance named 't1' is already running ({instance.run_dir}/t1.sock): give this one "
                f"another --name") in dup.stderr
    finally:
        again.signal(signal.SIGTERM)
        again.finish()
    assert not Path(path).exists()


def blocks(r) -> list[tuple[str, int]]:
    out = ctl(r, "--name", "tb", "blocks", "--json")
    assert out.returncode == 0, out.stderr
    return [(e["prefix"], e["hits"]) for e in json.loads(out.stdout)]


@pytest.mark.parametrize("enforce", [True, False], ids=["enforce", "log-only"])
def test_block_unblock_expiry_and_allowed_through_ctl(veth_pair, tmp_path, enforce):
    """ctl block drops (--enforce) or counts as would-drop the blocked source's frames at
    once; ctl unblock lets them through at once; a TTL ends in the kernel (frames pass
    after it) and the entry is swept; allowed prefixes (--allow, the interface's own
    address) are refused with the reason. The final reading counts exactly."""
    spec = tmp_path / "od.mon"
    spec.write_text(SPEC)
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run")}
    r = Running(veth_pair, [str(spec), "-i", "mon", "--name", "tb", "--json", "--interval", "1s",
                            "--duration", "60s", "--allow", "198.18.77.0/24"] + (["--enforce"] if enforce else []), env)
    r.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    try:
        out = ctl(r, "--name", "tb", "block", "198.18.200.2", "--for", "1h", "--reason", "test")
        assert out.returncode == 0, out.stderr
        e = json.loads(out.stdout)
        assert (e["prefix"], e["action"], e["reason"], e["hits"]) == (
            "198.18.200.2/32", "drop" if enforce else "would drop", "test", 0)
        veth_pair.send([syn()] * 10)
        assert blocks(r) == [("198.18.200.2/32", 10)]
        out = ctl(r, "--name", "tb", "unblock", "198.18.200.2")
        assert (out.returncode, out.stdout) == (0, "198.18.200.2/32: unblocked\n"), out.stderr
        veth_pair.send([syn()] * 5)
        assert blocks(r) == []
        # a TTL: the kernel ignores the entry after it, the next tick sweeps it
        assert ctl(r, "--name", "tb", "block", "198.18.200.0/24", "--for", "2s").returncode == 0
        veth_pair.send([syn()] * 4)
        assert blocks(r) == [("198.18.200.0/24", 4)]
        time.sleep(3.5)
        veth_pair.send([syn()] * 6)
        assert blocks(r) == []
        for prefix, why in [("198.18.77.5", "198.18.77.0/24 (--allow)"),
                            (f"{veth_pair.mon_addr}", f"{veth_pair.mon_addr}/32 (an address of mon)")]:
            out = ctl(r, "--name", "tb", "block", prefix)
            assert out.returncode == 2
            assert why in out.stderr and "allowed prefixes are never blocked" in out.stderr, out.stderr
    finally:
        r.signal(signal.SIGTERM)
        code, stdout, err = r.finish()
    assert code == 0, err
    c = final_of(stdout)["counters"]
    if enforce:
        assert (c["blocklist.dropped"], c["blocklist.logged"], c["verdict.drop"]) == (14, 0, 14)
    else:
        assert (c["blocklist.dropped"], c["blocklist.logged"], c["verdict.drop"]) == (0, 14, 0)
    assert veth_pair.xdp() is None
