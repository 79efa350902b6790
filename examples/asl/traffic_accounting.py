"""ASL of traffic_accounting (specs/traffic_accounting.mon): a periodic traffic report.

No rules: the kernel counts packets and bytes per destination, and every ``every``
ticks (seconds; ASL option ``every``, default 10) this handler emits one
``traffic_report``: ``packets`` and ``bytes`` since the start, ``destinations`` (how many),
``packets_per_s`` and ``bits_per_s`` over the period, and ``top_destinations``
(``top``, default 5, by bytes: ``[address, packets, bytes, share of all bytes]``).
"""

from __future__ import annotations

from runtime.asl.periodic import PeriodicReport


class TrafficAccountingHandler(PeriodicReport):
    app = "traffic_accounting"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.before = (0, 0, None)          # packets, bytes, time of the last report

    def report(self) -> None:
        rows = [(e["key"]["ip.dst"], e["value"]["packets"], e["value"]["bytes"]) for e in self.ctx.stats("per_dst")]
        packets, nbytes = sum(r[1] for r in rows), sum(r[2] for r in rows)
        now = self.ctx.now()
        p0, b0, t0 = self.before
        secs = (now - t0) / 1e9 if t0 is not None and now > t0 else None
        top = sorted(rows, key=lambda r: (-r[2], r[0]))[:self.top]
        self.ctx.emit("traffic_report", packets=packets, bytes=nbytes, destinations=len(rows),
                      packets_per_s=round((packets - p0) / secs, 1) if secs else None,
                      bits_per_s=round(8 * (nbytes - b0) / secs, 1) if secs else None,
                      top_destinations=[[d, p, b, round(b / nbytes, 4)] for d, p, b in top])
        self.before = (packets, nbytes, now)


HANDLER = TrafficAccountingHandler
