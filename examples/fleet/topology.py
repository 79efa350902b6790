"""The fleet's network on one machine: N hosts with traffic of their own, and a monitoring
namespace that reaches every host's exporter.

For host ``i`` (0 <= i < ``MAX_HOSTS``):

- ``<tag>-h<i>-m``, the host: interface ``mon`` (198.18.i.1/30), where its xdpmon instance
  is attached, and interface ``mgmt`` (198.18.255.4i+2/30), its management link, on which
  the exporter listens (scrapes never cross the monitored interface, so what the
  instance counts is exactly the traffic sent to it);
- ``<tag>-h<i>-p``, the host's traffic peer: interface ``peer`` (198.18.i.2/30), the other
  end of ``mon``, from which its frames are sent (runtime/traffic/veth.py makes the pair).

``<tag>-mon``, the monitoring namespace: interface ``h<i>`` (198.18.255.4i+1/30) at the
other end of each host's ``mgmt``, and its loopback up, where both Prometheus servers
listen. Addresses are in 198.18.0.0/15 only, nobody has a default route, IPv6 is off
everywhere: nothing sent here can leave for anywhere else.

``<tag>`` is ``xfleet<pid>``: ``stale()`` finds what a killed run left (its process gone).
``close()`` deletes every namespace (the veths go with them, and every XDP program
attached there); it is safe to call twice and after a failed ``__init__``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from runtime.traffic.veth import VethPair, namespaces, sh

PREFIX = "xfleet"
MAX_HOSTS = 64                    # management links: 198.18.255.0/24 in /30s
_OWN = re.compile(rf"^{PREFIX}(\d+)-")


@dataclass
class Host:
    index: int
    name: str                     # "host0": the label Prometheus gives its series
    pair: VethPair                # ns: pair.mon_ns (the host), pair.peer_ns (its traffic peer)
    mgmt_addr: str                # the host's end of the management link: the exporter's address
    monitor_addr: str             # the monitoring namespace's end

    @property
    def ns(self) -> str:
        return self.pair.mon_ns

    @property
    def iface(self) -> str:
        return self.pair.MON_IF


def mgmt_addresses(i: int) -> tuple[str, str]:
    """(monitoring end, host end) of host ``i``'s management link."""
    return f"198.18.255.{4 * i + 1}", f"198.18.255.{4 * i + 2}"


def stale() -> list[str]:
    """Namespaces of the fleet whose process is not running any more."""
    out = []
    for ns in namespaces():
        m = _OWN.match(ns)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            out.append(ns)
    return out


class Topology:
    MGMT_IF = "mgmt"

    def __init__(self, hosts: int, tag: str | None = None):
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"a fleet has 1..{MAX_HOSTS} hosts, not {hosts}")
        self.tag = tag or f"{PREFIX}{os.getpid()}"
        self.monitor_ns = f"{self.tag}-mon"
        self.hosts: list[Host] = []
        self._made: list[str] = []
        try:
            sh("ip", "netns", "add", self.monitor_ns)
            self._made.append(self.monitor_ns)
            sh("ip", "netns", "exec", self.monitor_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", self.monitor_ns, "link", "set", "lo", "up")
            for i in range(hosts):
                self.hosts.append(self._host(i))
        except BaseException:
            self.close()
            raise

    def _host(self, i: int) -> Host:
        pair = VethPair(f"{self.tag}-h{i}", subnet=i)
        self._made += [pair.mon_ns, pair.peer_ns]
        mon_end, host_end = mgmt_addresses(i)
        near = f"h{i}"
        try:
            sh("ip", "link", "add", self.MGMT_IF, "netns", pair.mon_ns, "type", "veth",
               "peer", "name", near, "netns", self.monitor_ns)
            sh("ip", "-n", pair.mon_ns, "addr", "add", f"{host_end}/30", "dev", self.MGMT_IF)
            sh("ip", "-n", self.monitor_ns, "addr", "add", f"{mon_end}/30", "dev", near)
            sh("ip", "-n", pair.mon_ns, "link", "set", self.MGMT_IF, "up")
            sh("ip", "-n", self.monitor_ns, "link", "set", near, "up")
        except Exception as e:
            detail = (getattr(e, "stderr", "") or str(e)).strip()
            raise OSError(f"cannot make the management link of host {i}: {detail}") from None
        return Host(i, f"host{i}", pair, host_end, mon_end)

    def close(self) -> list[str]:
        """Delete every namespace made; the names of those still there after (none, normally)."""
        for ns in self._made:
            sh("ip", "netns", "del", ns, check=False)
        left = sorted(set(namespaces()) & set(self._made))
        self._made = []
        return left

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
