"""Two network namespaces joined by a veth pair, for tests on live interfaces.

``VethPair()`` creates ``<base>-m`` (the monitor side, interface ``mon``) and
``<base>-p`` (the peer, interface ``peer``) with 198.18.x.1/30 and 198.18.x.2/30,
links up, no default route, and IPv6 off (no router solicitations or MLD
reports: every frame the monitor sees is one the test sent); ``queues``: receive and
transmit queues of each end (veth's numrxqueues/numtxqueues). ``send(frames)``
sends raw Ethernet frames from the peer (an AF_PACKET socket in a child process
inside the peer namespace), at most ``MAX_FRAMES`` per call. ``run_in_monitor``
starts a command in the monitor namespace;
``with pair.monitor():`` runs a block there (this thread). ``close()`` removes the namespaces
(the veth goes with them, and every XDP program attached there); it runs on
teardown, also when the test failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import struct
import subprocess
import sys

MAX_FRAMES = 1_000_000
_seq = itertools.count()
_SENDER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
gap = float(sys.argv[2])
data = sys.stdin.buffer.read()
off = n = 0
while off < len(data):
    (ln,) = struct.unpack_from("<I", data, off)
    s.send(data[off + 4: off + 4 + ln])
    off += 4 + ln
    n += 1
    if gap:
        time.sleep(gap)
print(n)
"""


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name: str):
    """Run the block in network namespace ``name`` (this thread only), then come back."""
    libc = ctypes.CDLL(None, use_errno=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if libc.setns(back, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(there)
        os.close(back)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def namespaces() -> list[str]:
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class VethPair:
    MON_IF = "mon"
    PEER_IF = "peer"

    def __init__(self, base: str | None = None, mtu: int = 1500, queues: int = 1):
        n = next(_seq)
        self.base = base or f"xmt{os.getpid() % 100000}n{n}"
        self.mon_ns, self.peer_ns = f"{self.base}-m", f"{self.base}-p"
        self.subnet = n % 250
        self.mon_addr, self.peer_addr = f"198.18.{self.subnet}.1", f"198.18.{self.subnet}.2"
        try:
            for ns in (self.mon_ns, self.peer_ns):
                sh("ip", "netns", "add", ns)
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1")
            q = ["numtxqueues", str(queues), "numrxqueues", str(queues)] if queues != 1 else []
            sh("ip", "link", "add", self.MON_IF, "netns", self.mon_ns, "mtu", str(mtu), *q, "type", "veth",
               "peer", "name", self.PEER_IF, "netns", self.peer_ns, "mtu", str(mtu), *q)
            sh("ip", "-n", self.mon_ns, "addr", "add", f"{self.mon_addr}/30", "dev", self.MON_IF)
            sh("ip", "-n", self.peer_ns, "addr", "add", f"{self.peer_addr}/30", "dev", self.PEER_IF)
            for ns, dev in ((self.mon_ns, self.MON_IF), (self.peer_ns, self.PEER_IF)):
                sh("ip", "-n", ns, "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise

    def send(self, frames: list[bytes], gap_s: float = 0.0, timeout: float = 60) -> int:
        """Send ``frames`` from the peer, in order; the number sent."""
        if len(frames) > MAX_FRAMES:
            raise ValueError(f"at most {MAX_FRAMES} frames per send")
        data = b"".join(struct.pack("<I", len(f)) + f for f in frames)
        r = subprocess.run(["ip", "netns", "exec", self.peer_ns, sys.executable, "-c", _SENDER, self.PEER_IF,
                            str(gap_s)], input=data, capture_output=True, timeout=timeout, check=True)
        return int(r.stdout)

    def monitor(self):
        """``with pair.monitor():`` this thread in the monitor namespace."""
        return in_netns(self.mon_ns)

    def send_async(self, frames: list[bytes], gap_s: float = 0.0) -> subprocess.Popen:
        """Start sending ``frames`` from the peer; ``sent(p)`` waits and gives the count sent."""
        data = b"".join(struct.pack("<I", len(f)) + f for f in frames)
        p = subprocess.Popen(["ip", "netns", "exec", self.peer_ns, sys.executable, "-c", _SENDER, self.PEER_IF,
                              str(gap_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        p.stdin.write(data)
        p.stdin.close()
        return p

    @staticmethod
    def sent(p: subprocess.Popen, timeout: float = 120) -> int:
        out = p.stdout.read()
        p.wait(timeout=timeout)
        return int(out)

    def run_in_monitor(self, args: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.mon_ns, *args], **kw)

    def xdp(self) -> dict | None:
        """The monitor interface's XDP program as ``ip -j link show`` says (None: none)."""
        import json
        info = json.loads(sh("ip", "-n", self.mon_ns, "-j", "link", "show", self.MON_IF).stdout)[0]
        return info.get("xdp")

    def close(self) -> None:
        for ns in (self.mon_ns, self.peer_ns):
            sh("ip", "netns", "del", ns, check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
