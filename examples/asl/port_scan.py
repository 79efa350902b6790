"""ASL of port_scan (specs/port_scan.mon): confirm and describe scanners.

The kernel sends probes of sources already past ``max_ports`` distinct
(destination, port) pairs in 10 s. This handler keeps the exact set of probed
ports per scanner and reports each scanner once, with how many ports and hosts
it touched, then at each tick where they grew, with its totals. ``scanner`` is a
warning (the event's severity), ``scanner_summary`` info.
"""

from __future__ import annotations

from collections import defaultdict


class PortScanHandler:
    app = "port_scan"

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.ports: dict[str, set[int]] = defaultdict(set)
        self.hosts: dict[str, set[str]] = defaultdict(set)
        self.reported: set[str] = set()
        self.summarised: dict[str, tuple[int, int]] = {}

    def on_packet(self, event) -> None:
        src = event.ip_src
        self.ports[src].add(event.l4_dport)
        self.hosts[src].add(event.ip_dst)
        if src not in self.reported:
            self.reported.add(src)
            self._emit("scanner", source=src, threshold=self.ctx.params["max_ports"], ts=event.ts,
                       severity="warning")

    def on_alert(self, event) -> None:
        self.ctx.log.warning("alert: %s", event.message)

    def on_tick(self) -> None:
        for src in sorted(self.ports):
            now = (len(self.ports[src]), len(self.hosts[src]))
            if self.summarised.get(src) != now:          # only what changed since the last tick
                self.summarised[src] = now
                self._emit("scanner_summary", source=src, ports=now[0], hosts=now[1])

    def _emit(self, kind: str, severity: str = "info", **fields) -> None:
        self.ctx.log.info("%s %s", kind, fields)
        self.ctx.emit(kind, severity=severity, **fields)


HANDLER = PortScanHandler
