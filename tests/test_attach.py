"""Attaching one program to interfaces (runtime/dataplane/attach.py) on veth
pairs in namespaces of their own: links, modes, refusal, atomic replace, all or
nothing, and the status and detach commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.dataplane import libbpf as L
from runtime.dataplane.attach import AttachError, attach_all, attach_one, detach_one, present

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kernel]
SPEC = str(ROOT / "specs" / "traffic_accounting.mon")


@pytest.fixture(scope="module")
def art():
    from compiler.driver import compile_files
    return compile_files([SPEC])


@pytest.fixture
def engines(art):
    from runtime.engines.live import LiveEngine
    made = []

    def make():
        e = LiveEngine(art)
        made.append(e)
        return e
    yield make
    for e in made:
        e.close()


def frame(dst="198.18.9.9"):
    from scapy.all import IP, UDP, Ether, Raw
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="198.18.200.2", dst=dst)
                 / UDP(sport=1, dport=2) / Raw(b"x" * 18))


def frames_of(eng) -> int:
    return eng.snapshot()["counters"]["frames"]


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_a_link_counts_frames_and_goes_on_close(veth_pair, engines, mode):
    eng = engines()
    with veth_pair.monitor():
        att = attach_all(eng.fd, ["mon"], mode=mode)
    a = att.results[0]
    assert (a.mode, a.how, a.note) == (mode, "link", None)
    x = veth_pair.xdp()
    assert x["prog"]["id"] == a.prog_id and x["mode"] == {"native": 1, "generic": 2}[mode]
    assert veth_pair.send([frame()] * 25) == 25
    time.sleep(0.1)
    assert frames_of(eng) == 25
    with veth_pair.monitor():
        att.close()
    assert veth_pair.xdp() is None


def test_auto_falls_back_to_generic_and_says_why(engines):
    from netns import VethPair
    eng = engines()
    with VethPair(mtu=9000) as pair:
        with pair.monitor():
            att = attach_all(eng.fd, ["mon"], mode="auto")
            a = att.results[0]
            assert a.mode == "generic"
            assert a.note == ("mon: generic XDP, not native: the MTU of mon (9,000) is too large for native XDP "
                              "on its driver, which holds a frame in one page (e.g. ip link set mon mtu 1500)")
            with pytest.raises(AttachError, match=r"cannot attach to mon in native mode: the MTU of mon \(9,000\)"):
                att.close()
                attach_all(eng.fd, ["mon"], mode="native")


def test_refuses_an_interface_that_has_a_program_naming_it(veth_pair, engines):
    first, second = engines(), engines()
    with veth_pair.monitor():
        att = attach_all(first.fd, ["mon"], mode="generic")
        pid = att.results[0].prog_id
        link = att.results[0].link_id
        with pytest.raises(AttachError) as e:
            attach_all(second.fd, ["mon"], mode="generic")
        att.close()
    assert str(e.value) == (f"mon already has an XDP program: id {pid} (xdpmon_main), generic mode, attached by "
                            f"a BPF link. xdpmon does not take an interface from another program unless told: "
                            f"--replace swaps it atomically, or remove it first ('xdpmon detach -i mon' for a "
                            f"leftover)")
    assert link is not None


def _swap_while_sending(veth_pair, old, new, put_old, n=20000):
    """Frames sent during the swap are counted once: by the old program or the new one."""
    with veth_pair.monitor():
        put_old()
        sender = veth_pair.send_async([frame()] * n, gap_s=0.00002)
        time.sleep(0.2)
        a = attach_one(new.fd, "mon", mode="generic", replace=True)
        assert present(a.ifindex)[0] == a.prog_id           # never without a program: replaced in place
    sent = veth_pair.sent(sender)
    time.sleep(0.1)
    assert sent == n
    o, w = frames_of(old), frames_of(new)
    assert o > 0 and w > 0, (o, w)                         # the swap happened while frames flowed
    assert o + w == n
    return a


def test_replace_over_netlink_is_atomic(veth_pair, engines):
    old, new = engines(), engines()

    def put_old():
        L.xdp_attach(L_ifindex("mon"), old.fd, L.XDP_FLAGS_SKB_MODE)
    a = _swap_while_sending(veth_pair, old, new, put_old)
    assert a.how == "netlink" and a.replaced == f"id {old.loaded.info.id} (xdpmon_main)"
    with veth_pair.monitor():
        detach_one(a)
    assert veth_pair.xdp() is None


def L_ifindex(name):
    import socket
    return socket.if_nametoindex(name)


def test_replace_in_the_link_of_another_process(veth_pair, engines):
    """An instance holding a link is replaced in its link; when it closes, it leaves the new program."""
    old, new = engines(), engines()
    held = {}

    def put_old():
        held["att"] = attach_all(old.fd, ["mon"], mode="generic")
    a = _swap_while_sending(veth_pair, old, new, put_old)
    assert a.how == "link" and a.link_id == held["att"].results[0].link_id
    with veth_pair.monitor():
        held["att"].close()                                  # the old owner goes: not ours any more
        assert present(a.ifindex)[0] == a.prog_id
        detach_one(a)
    assert veth_pair.xdp() is None


def test_all_or_nothing(veth_pair, engines):
    eng = engines()
    with veth_pair.monitor():
        with pytest.raises(AttachError) as e:
            attach_all(eng.fd, ["mon", "nosuch0"], mode="generic")
        assert present(L_ifindex("mon")) is None               # the first was taken back
    assert str(e.value).startswith("interface 'nosuch0' does not exist in this network namespace (interfaces here: ")


def test_down_interface(veth_pair, engines):
    eng = engines()
    subprocess.run(["ip", "-n", veth_pair.mon_ns, "link", "set", "mon", "down"], check=True)
    with veth_pair.monitor():
        with pytest.raises(AttachError) as e:
            attach_all(eng.fd, ["mon"])
    assert str(e.value) == "interface 'mon' is down: bring it up first (ip link set mon up)"


def _xdpmon(pair, *args):
    return subprocess.run(["ip", "netns", "exec", pair.mon_ns, sys.executable, "-m", "runtime.cli", *args],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_status_and_detach_commands(veth_pair, engines):
    eng = engines()
    with veth_pair.monitor():
        L.xdp_attach(L_ifindex("mon"), eng.fd, L.XDP_FLAGS_SKB_MODE)      # a leftover netlink attach
    st = json.loads(_xdpmon(veth_pair, "status", "--json").stdout)
    mon = next(i for i in st["interfaces"] if i["name"] == "mon")
    assert (mon["prog_id"], mon["prog_name"], mon["mode"], mon["attached_by"]) == \
        (eng.loaded.info.id, "xdpmon_main", "generic", "netlink")
    r = _xdpmon(veth_pair, "detach", "-i", "mon")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"mon: detached id {eng.loaded.info.id} (xdpmon_main) (generic, attached by netlink)\n"
    assert veth_pair.xdp() is None
    r = _xdpmon(veth_pair, "detach", "-i", "mon")
    assert (r.returncode, r.stdout) == (0, "mon: no XDP program; nothing to do\n")


def test_detach_refuses_a_link_of_a_running_process(veth_pair, engines):
    eng = engines()
    with veth_pair.monitor():
        att = attach_all(eng.fd, ["mon"], mode="generic")
    r = _xdpmon(veth_pair, "detach", "-i", "mon")
    assert r.returncode == 2
    assert f"held by BPF link {att.results[0].link_id}, which belongs to a running process" in r.stderr
    assert veth_pair.xdp() is not None
    with veth_pair.monitor():
        att.close()
