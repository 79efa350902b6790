"""ASL of half_open_tcp (specs/half_open_tcp.mon): who has too many half-open
connections, and whether it keeps growing.

The kernel sends a summary (at most once a second) while more than ``max_pending``
handshakes are open (SYN seen, the final ACK not yet, within 30 s). The summary is this
app's snapshot. For each the handler emits ``half_open``: ``pending`` (the table's size),
``max_pending``, ``oldest_ns`` (when the oldest pending handshake was opened),
``top_destinations`` ([address, pending], most first, five) and ``growth`` (pending
since the summary before). Once pending has grown in ``GROWING`` summaries in a row it
emits one ``half_open_growing`` alert (severity warning: ``from``, ``to``, ``summaries``,
the top destination), and again only after a summary where it did not grow.
"""

from __future__ import annotations

from collections import Counter


class HalfOpenTcpHandler:
    app = "half_open_tcp"
    GROWING = 3

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.summaries = 0
        self.last: int | None = None
        self.run: list[int] = []          # pending of the summaries in the current growing run
        self.alerted = False

    def on_summary(self, snapshot: dict) -> None:
        self.summaries += 1
        pending = snapshot.get("stats", {}).get("pending", {"size": 0, "open": []})
        size = pending["size"]
        per_dst = Counter(e["key"]["ip.dst"] for e in pending["open"])
        top = sorted(per_dst.items(), key=lambda t: (-t[1], t[0]))[:5]
        oldest = min((e["value"]["opened"] for e in pending["open"]), default=None)
        growth = None if self.last is None else size - self.last
        self.ctx.emit("half_open", pending=size, max_pending=self.ctx.params["max_pending"], oldest_ns=oldest,
                      top_destinations=[list(t) for t in top], growth=growth)
        if growth is not None and growth > 0:
            self.run = (self.run or [self.last]) + [size]
        else:
            self.run, self.alerted = [], False
        if len(self.run) > self.GROWING and not self.alerted:
            self.alerted = True
            self.ctx.emit("half_open_growing", severity="warning", **{"from": self.run[0], "to": size, "summaries": len(self.run) - 1,
                                                  "top_destination": top[0][0] if top else None})
        self.last = size


HANDLER = HalfOpenTcpHandler
