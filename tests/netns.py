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


from runtime.traffic.netns import in_netns  # noqa: F401  (tests enter namespaces with it)
from runtime.traffic.veth import VethPair as _VethPair, namespaces, sh  # noqa: F401


class VethPair(_VethPair):
    """runtime/traffic/veth.py's pair, named for this test process, with senders."""

    def __init__(self, base: str | None = None, mtu: int = 1500, queues: int = 1):
        n = next(_seq)
        super().__init__(base or f"xmt{os.getpid() % 100000}n{n}", subnet=n % 250, mtu=mtu, queues=queues)

    def send(self, frames: list[bytes], gap_s: float = 0.0, timeout: float = 60) -> int:
        """Send ``frames`` from the peer, in order; the number sent."""
        if len(frames) > MAX_FRAMES:
            raise ValueError(f"at most {MAX_FRAMES} frames per send")
        data = b"".join(struct.pack("<I", len(f)) + f for f in frames)
        r = subprocess.run(["ip", "netns", "exec", self.peer_ns, sys.executable, "-c", _SENDER, self.PEER_IF,
                            str(gap_s)], input=data, capture_output=True, timeout=timeout, check=True)
        return int(r.stdout)

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



class ProgramWatch:
    """Polls the monitor interface's XDP program from a thread in its namespace, as fast
    as bpf_xdp_query answers: every program id in the order seen, when each was first
    seen (time.monotonic()), and how many polls found no program."""

    def __init__(self, pair):
        import threading

        self.pair, self.ids, self.seen, self.none, self.polls = pair, [], {}, 0, 0
        self.stop_ = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import socket
        import time

        from runtime.dataplane.attach import present

        with in_netns(self.pair.mon_ns):
            ifindex = socket.if_nametoindex(self.pair.MON_IF)
            while not self.stop_.is_set():
                cur = present(ifindex)
                self.polls += 1
                if cur is None:
                    self.none += 1
                elif not self.ids or self.ids[-1] != cur[0]:
                    self.ids.append(cur[0])
                    self.seen.setdefault(cur[0], time.monotonic())

    def stop(self):
        self.stop_.set()
        self.thread.join(timeout=10)
