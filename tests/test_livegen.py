"""The live traffic generator (runtime/traffic/): frames sent out of the peer veth of a
pair of namespaces (tests/netns.py), counted by xdpmon itself attached (native XDP) to
the monitor veth: exactly the number sent, at about the rate asked for, one source per
frame when asked, exact checksums, nothing left behind. Each contract holds for both
ways of sending: BPF_PROG_TEST_RUN in live-frames mode, and the AF_PACKET transmit ring
(txring.py) that stands in where the kernel refuses live frames; the live-frames cases
are skipped, with the kernel's answer as the reason, on such a kernel."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import time
from pathlib import Path

import pytest

from runtime.dataplane import libbpf as L
from runtime.dataplane.attach import attach_all, present
from runtime.traffic import frames as F
from runtime.traffic import xdp_live
from runtime.traffic.livegen import LiveGenerator, open_generator
from runtime.traffic.netns import in_netns

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTING = str(ROOT / "specs" / "traffic_accounting.mon")
BY_SRC = "app seen {\n  t1 { select ip }\n  t2 { by_src = count() by ip.src size 65536 }\n}\n"


def mac_of(pair) -> str:
    from netns import sh
    return json.loads(sh("ip", "-n", pair.mon_ns, "-j", "link", "show", pair.MON_IF).stdout)[0]["address"]


class Monitor:
    """xdpmon (the live build of ``specs``) attached in native mode to the monitor veth."""

    def __init__(self, pair, specs: list[str]):
        from compiler.driver import compile_files
        from runtime.engines.live import LiveEngine
        self.pair = pair
        self.eng = LiveEngine(compile_files(specs))
        with pair.monitor():
            self.att = attach_all(self.eng.fd, [pair.MON_IF], mode="native")
        assert self.att.results[0].mode == "native"

    def stat(self, app: str, stat: str) -> dict:
        time.sleep(0.1)                   # the receiver's NAPI poll runs after the send returns
        rows = self.eng.snapshot()["apps"][app]["stats"][stat]
        return {next(iter(r["key"].values())): r["value"] for r in rows}

    def close(self) -> None:
        with self.pair.monitor():
            self.att.close()
        self.eng.close()


BACKENDS = ["live-frames", "tx-ring"]


def needs(backend: str) -> None:
    if backend == "live-frames":
        why = xdp_live.refusal()
        if why:
            pytest.skip(why)


@pytest.fixture(params=BACKENDS)
def gen_of(request, kernel):
    """``gen_of(template, ifname, netns, **kw)``: a generator of the parametrised backend."""
    needs(request.param)

    def make(*a, **kw):
        g = open_generator(*a, backend=request.param, **kw)
        assert g.backend == request.param
        return g
    make.backend = request.param
    return make


@pytest.fixture
def monitor(veth_pair):
    made = []

    def make(specs):
        m = Monitor(veth_pair, specs)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


@pytest.mark.kernel
def test_exactly_n_frames_at_about_the_rate(veth_pair, monitor, gen_of):
    mon = monitor([ACCOUNTING])
    t = F.build("udp", veth_pair.peer_addr, veth_pair.mon_addr, dst_mac=mac_of(veth_pair))
    with gen_of(t, veth_pair.PEER_IF, veth_pair.peer_ns) as gen:
        r = gen.send(20_000, 200_000)
        assert (r.requested, r.sent, r.timed_out) == (20_000, 20_000, False)
        assert r.calls == 20_000 // 64 + 1 and r.chunk == 64
        # 20,000 frames at 200 kpps: call k starts at k x 64 / 200,000 s, the last (313th)
        # at 0.0998 s: never sooner; later only by what the shared machine costs
        assert 0.0998 <= r.elapsed_s < 0.2
        assert 100_000 < r.rate_pps <= 200_500
        assert gen.frames_sent() == 20_000
    assert mon.stat("traffic_accounting", "per_dst") == {veth_pair.mon_addr: {"packets": 20_000, "bytes": 20_000 * 60}}


@pytest.mark.kernel
def test_as_fast_as_it_goes_every_frame_is_seen_or_counted_dropped(veth_pair, monitor, gen_of):
    """Back to back, 256 frames a batch: the veth's ring (256 frames) may overflow while
    the receiver's poll waits; the veth counts those as the receiver's rx_dropped, and
    seen + dropped is exactly what was sent."""
    mon = monitor([ACCOUNTING])
    t = F.build("udp", veth_pair.peer_addr, "198.18.77.7", size=128, dst_mac=mac_of(veth_pair))
    with gen_of(t, veth_pair.PEER_IF, veth_pair.peer_ns, batch_size=256) as gen:
        r = gen.send(100_000, chunk=1000)
    assert (r.sent, r.calls, r.target_pps) == (100_000, 100, None)
    seen = mon.stat("traffic_accounting", "per_dst")["198.18.77.7"]
    dropped = rx_dropped(veth_pair)
    assert seen["packets"] + dropped == 100_000
    assert seen["bytes"] == seen["packets"] * 128


def rx_dropped(pair) -> int:
    from netns import sh
    return json.loads(sh("ip", "-n", pair.mon_ns, "-s", "-j", "link", "show", pair.MON_IF).stdout)[0]["stats64"]["rx"]["dropped"]


@pytest.mark.kernel
@pytest.mark.parametrize("proto", ["udp", "tcp-syn"])
def test_a_new_source_per_frame(veth_pair, monitor, tmp_path, proto, gen_of):
    spec = tmp_path / "seen.mon"
    spec.write_text(BY_SRC)
    mon = monitor([str(spec)])
    n = 5000
    t = F.build(proto, "198.18.100.0", veth_pair.mon_addr, dst_mac=mac_of(veth_pair))
    with gen_of(t, veth_pair.PEER_IF, veth_pair.peer_ns, src_count=n) as gen:
        assert gen.send(n, 500_000).sent == n
    base = int(ipaddress.IPv4Address("198.18.100.0"))
    assert mon.stat("seen", "by_src") == {str(ipaddress.IPv4Address(base + i)): {"count": 1} for i in range(n)}


def _csum_ok(data: bytes) -> bool:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


@pytest.mark.kernel
def test_rewritten_frames_have_exact_checksums(veth_pair, monitor, gen_of):
    """New source address and port per frame: the IPv4 and TCP checksums of every
    frame, as it arrived (a packet socket behind xdpmon, which passes them), hold."""
    monitor([ACCOUNTING])
    with veth_pair.monitor():
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        rx.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)     # SO_RCVBUFFORCE: a passed XDP frame's skb takes a page
        rx.bind((veth_pair.MON_IF, 0))
        rx.settimeout(2)
    try:
        t = F.build("tcp-syn", "198.18.10.250", veth_pair.mon_addr, sport=65000, dport=80,
                    dst_mac=mac_of(veth_pair))
        with gen_of(t, veth_pair.PEER_IF, veth_pair.peer_ns, src_count=10, sport_count=8) as gen:
            assert gen.send(80, 10_000).sent == 80
        got = []
        while len(got) < 80:
            f = rx.recv(2048)
            if f[23] == 6 and f[30:34] == ipaddress.IPv4Address(veth_pair.mon_addr).packed:
                got.append(f)
        assert struct.unpack("II", rx.getsockopt(263, 6, 8)) == (80, 0)   # PACKET_STATISTICS: none dropped
    finally:
        rx.close()
    seen = set()
    for f in got:
        ip, tcp = f[14:34], f[34:54]
        assert len(f) == 60 and struct.unpack("!H", ip[2:4])[0] == 40     # SYN, no payload, padded to 60
        assert _csum_ok(ip)
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
        assert _csum_ok(pseudo + tcp)
        assert tcp[13] == 0x02                              # SYN
        seen.add((str(ipaddress.IPv4Address(ip[12:16])), struct.unpack("!H", tcp[:2])[0]))
    assert seen == {(f"198.18.{10 + (250 + i) // 256}.{(250 + i) % 256}", 65000 + p)
                    for i in range(10) for p in range(8)}


@pytest.mark.kernel
def test_nothing_is_left_behind(kernel):
    from netns import VethPair, namespaces
    needs("live-frames")
    with VethPair() as pair:
        t = F.build("udp", pair.peer_addr, pair.mon_addr)
        gen = LiveGenerator(t, pair.PEER_IF, pair.peer_ns)
        prog_id = L.prog_head(gen.prog_fd).id
        with in_netns(pair.peer_ns):
            assert present(socket.if_nametoindex("lo")) == (prog_id, "generic")
        gen.close()
        with in_netns(pair.peer_ns):
            assert present(socket.if_nametoindex("lo")) is None
            assert present(socket.if_nametoindex(pair.PEER_IF)) is None
        names = (pair.mon_ns, pair.peer_ns)
    assert not set(names) & set(namespaces())
    for _ in range(50):                                 # the kernel frees a program after a grace period
        try:
            L.prog_fd_by_id(prog_id)
        except OSError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"program {prog_id} still exists")


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match=r"destination 10\.0\.0\.1 \.\. 10\.0\.0\.1 is not inside 198\.18\.0\.0/15"):
        F.build("udp", "198.18.0.2", "10.0.0.1")
    with pytest.raises(ValueError, match=r"sources 198\.19\.255\.0 \.\. 198\.20\.0\.255 is not inside"):
        F.check_range("198.19.255.0", 512, "sources")
    with pytest.raises(ValueError, match="unknown protocol 'icmp'"):
        F.build("icmp", "198.18.0.2", "198.18.0.1")
    with pytest.raises(ValueError, match="frame size 40 is not 60..1514 bytes"):
        F.build("udp", "198.18.0.2", "198.18.0.1", size=40)
    with pytest.raises(ValueError, match="source port 70000 is not 0..65535"):
        F.build("udp", "198.18.0.2", "198.18.0.1", sport=70000)


def test_template_checksums():
    t = F.build("tcp-syn", "198.18.3.4", "198.18.0.1", sport=1234, dport=80, size=60)
    f = t.frame
    assert len(f) == 60 and f[12:14] == b"\x08\x00" and f[23] == 6 and t.l4_check_off == 50
    assert _csum_ok(f[14:34])
    tcp = f[34:54]
    assert _csum_ok(f[26:34] + struct.pack("!BBH", 0, 6, 20) + tcp) and f[54:] == bytes(6)
    assert struct.unpack("!H", f[16:18])[0] == 40
    assert struct.unpack("<H", f[50:52])[0] == t.l4_check and struct.unpack("<H", f[24:26])[0] == t.ip_check
    assert tcp[13] == 0x02
    u = F.build("udp", "198.18.3.4", "198.18.0.1", size=100)
    assert struct.unpack("!HH", u.frame[38:42]) == (100 - 34, 0) and u.l4_check_off == 0


@pytest.mark.kernel
def test_two_sending_threads_into_two_receive_queues(kernel):
    """One thread per CPU, each its own share; the veth with 2 queues (each sender's CPU
    picks one); xdpmon counts every frame once."""
    from netns import VethPair
    needs("live-frames")
    with VethPair(queues=2) as pair:
        mon = Monitor(pair, [ACCOUNTING])
        try:
            t = F.build("udp", pair.peer_addr, pair.mon_addr, dst_mac=mac_of(pair))
            with LiveGenerator(t, pair.PEER_IF, pair.peer_ns) as gen:
                r = gen.send_parallel(30_001, 300_000, [0, 1])
                assert (r.sent, r.requested) == (30_001, 30_001) and gen.frames_sent() == 30_001
            assert mon.stat("traffic_accounting", "per_dst") == {pair.mon_addr: {"packets": 30_001,
                                                                                 "bytes": 30_001 * 60}}
        finally:
            mon.close()
        with pytest.raises(ValueError, match="cpus must be distinct CPUs"):
            gen.send_parallel(10, None, [0, 0])


@pytest.mark.kernel
def test_the_transmit_ring_frames_are_the_live_programs(kernel):
    """The ring's frames are livegen.c's rule computed in Python (frames.rewrite): frame n
    of the ring is the n-th flow, with both checksums exact; more distinct frames than
    the ring holds is refused."""
    from netns import VethPair
    from runtime.traffic.txring import MAX_RING_BYTES, TxRingGenerator
    with VethPair() as pair:
        t = F.build("tcp-syn", "198.19.128.0", "198.19.0.80", sport=1000)
        with TxRingGenerator(t, pair.PEER_IF, pair.peer_ns, src_count=300, sport_count=3) as gen:
            assert gen.slots % 900 == 0 and gen.frame_size == 128
            for n in (0, 299, 300, 899):
                off = n * gen.frame_size + 32
                f = bytes(gen.ring[off:off + 60])
                src, sport = F.nth_flow(t, n, 300, 3)
                assert (int.from_bytes(f[26:30], "big"), int.from_bytes(f[34:36], "big")) == (src, sport)
                assert (src - int(ipaddress.IPv4Address("198.19.128.0")), sport - 1000) == (n % 300, n // 300)
                assert _csum_ok(f[14:34]) and _csum_ok(f[26:34] + struct.pack("!BBH", 0, 6, 20) + f[34:54])
        with pytest.raises(ValueError, match="do not fit the transmit ring"):
            TxRingGenerator(F.build("udp", "198.18.0.0", "198.19.0.80"), pair.PEER_IF, pair.peer_ns,
                            src_count=1 << 17, sport_count=MAX_RING_BYTES // 128 // (1 << 17) + 1)
