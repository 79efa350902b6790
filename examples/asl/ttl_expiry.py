"""ASL of ttl_expiry (specs/ttl_expiry.mon): sources of packets that arrive with TTL <= 1.

The kernel alerts (at most once a second) while a source has sent more than ``per_src``
such packets. At each alert, and each tick (the limit is one alert a second for all
sources, so a second source may pass between two), this handler reads the app's counts
(``ctx.stats``) and emits
one ``ttl_expiry_source`` (severity warning) for each source past ``per_src`` not reported before
(``source``, ``packets``, ``last_seen_ns``): a routing loop, a traceroute, a host with a
wrong default TTL. At the stop it emits ``ttl_report``: every source it reported, with its
final count.
"""

from __future__ import annotations


class TtlExpiryHandler:
    app = "ttl_expiry"

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.reported: set[str] = set()

    def _over(self) -> list[tuple[str, int, int]]:
        limit = self.ctx.params["per_src"]
        return sorted(((e["key"]["ip.src"], e["value"]["count"], e["value"]["last_seen"])
                       for e in self.ctx.stats("low_ttl") if e["value"]["count"] > limit),
                      key=lambda t: (-t[1], t[0]))

    def on_alert(self, event) -> None:
        self._report_new()

    def on_tick(self) -> None:
        self._report_new()           # the alert is limited to 1/s for all sources: one may pass unseen

    def _report_new(self) -> None:
        for source, n, last in self._over():
            if source not in self.reported:
                self.reported.add(source)
                self.ctx.emit("ttl_expiry_source", severity="warning", source=source, packets=n, last_seen_ns=last)

    def on_stop(self) -> None:
        if self.reported:
            self.ctx.emit("ttl_report", sources=[[s, n] for s, n, _ in self._over() if s in self.reported])


HANDLER = TtlExpiryHandler
