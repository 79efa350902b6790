"""A handler that reports every N seconds: the base of the reference apps' periodic
reports (examples/asl/dns_flows.py, traffic_accounting.py, pkt_sizes.py), for handlers
of any app.

``PeriodicReport(ctx)`` calls ``self.report()`` every ``every`` ticks (the ASL option
``every``, default 10: seconds, a tick a second live and a tick per second of capture
time in a replay), and once more at the stop for a last, partial period; ``self.top``
is the ASL option ``top`` (default 5), for reports that list the largest.
"""

from __future__ import annotations


class PeriodicReport:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.every = int(ctx.options.get("every", 10))
        self.top = int(ctx.options.get("top", 5))
        self.ticks = 0

    def on_tick(self) -> None:
        self.ticks += 1
        if self.ticks % self.every == 0:
            self.report()

    def on_stop(self) -> None:
        if self.ticks % self.every:
            self.report()            # what the last, partial period saw

    def report(self) -> None:
        raise NotImplementedError
