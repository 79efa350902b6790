"""Two network namespaces joined by a veth pair: the test bed of ``xdpmon demo``, the
network tests and the live benchmarks.

``VethPair(base)`` creates namespaces ``<base>-m`` (the monitor side, interface
``MON_IF``) and ``<base>-p`` (the peer, ``PEER_IF``), gives the two ends
198.18.S.1/30 and 198.18.S.2/30 (``subnet`` S), sets the links up, and turns IPv6
off in both (no router solicitations or MLD reports: every frame the monitor sees
is one that was sent on purpose). No default route: nothing sent inside can leave
for anywhere else. ``queues``: receive and transmit queues of each end.

``close()`` deletes both namespaces; the veth goes with them, and every XDP
program attached there. It is safe to call twice and after a failed ``__init__``
(which calls it itself). ``stale(prefix)`` lists namespaces left by an earlier run
whose process is gone (their names end in that process's pid).
"""

from __future__ import annotations

import json
import os
import subprocess

from .netns import in_netns


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def namespaces() -> list[str]:
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def stale(prefix: str) -> list[str]:
    """Namespaces named ``<prefix><pid>-m``/``-p`` whose process ``pid`` is not running."""
    out = []
    for ns in namespaces():
        if ns.startswith(prefix) and ns[-2:] in ("-m", "-p"):
            pid = ns[len(prefix):-2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                out.append(ns)
    return out


class VethPair:
    MON_IF = "mon"
    PEER_IF = "peer"

    def __init__(self, base: str, subnet: int = 0, mtu: int = 1500, queues: int = 1):
        if not 0 <= subnet <= 255:
            raise ValueError(f"subnet is 0..255 (198.18.S.0/30), not {subnet}")
        self.base = base
        self.mon_ns, self.peer_ns = f"{base}-m", f"{base}-p"
        self.subnet = subnet
        self.mon_addr, self.peer_addr = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
        self._made: list[str] = []
        try:
            for ns in (self.mon_ns, self.peer_ns):
                sh("ip", "netns", "add", ns)
                self._made.append(ns)
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1")
            q = ["numtxqueues", str(queues), "numrxqueues", str(queues)] if queues != 1 else []
            sh("ip", "link", "add", self.MON_IF, "netns", self.mon_ns, "mtu", str(mtu), *q, "type", "veth",
               "peer", "name", self.PEER_IF, "netns", self.peer_ns, "mtu", str(mtu), *q)
            sh("ip", "-n", self.mon_ns, "addr", "add", f"{self.mon_addr}/30", "dev", self.MON_IF)
            sh("ip", "-n", self.peer_ns, "addr", "add", f"{self.peer_addr}/30", "dev", self.PEER_IF)
            for ns, dev in ((self.mon_ns, self.MON_IF), (self.peer_ns, self.PEER_IF)):
                sh("ip", "-n", ns, "link", "set", dev, "up")
        except subprocess.CalledProcessError as e:
            self.close()
            raise OSError(f"cannot make the veth pair {self.base}: {' '.join(e.cmd)}: "
                          f"{(e.stderr or '').strip()}") from None
        except BaseException:
            self.close()
            raise

    def monitor(self):
        """``with pair.monitor():`` this thread (and threads it starts) in the monitor namespace."""
        return in_netns(self.mon_ns)

    def mac(self, side: str = "mon") -> str:
        ns, dev = (self.mon_ns, self.MON_IF) if side == "mon" else (self.peer_ns, self.PEER_IF)
        return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]["address"]

    def xdp(self) -> dict | None:
        """The monitor interface's XDP program as ``ip -j link show`` says (None: none)."""
        info = json.loads(sh("ip", "-n", self.mon_ns, "-j", "link", "show", self.MON_IF).stdout)[0]
        return info.get("xdp")

    def rx_dropped(self) -> int:
        """Frames the monitor end could not queue (its rx_dropped)."""
        out = sh("ip", "-n", self.mon_ns, "-s", "-j", "link", "show", self.MON_IF).stdout
        return json.loads(out)[0]["stats64"]["rx"]["dropped"]

    def close(self) -> None:
        for ns in (self.mon_ns, self.peer_ns):
            sh("ip", "netns", "del", ns, check=False)
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
