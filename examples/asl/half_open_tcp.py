"""ASL of half_open_tcp (specs/half_open_tcp.mon): who has too many half-open
connections.

The kernel sends a summary (at most once a second) while more than
``max_pending`` handshakes are open. The summary is this app's snapshot; the
handler reports the destinations with the most pending handshakes.
"""

from __future__ import annotations

from collections import Counter


class HalfOpenTcpHandler:
    app = "half_open_tcp"

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.summaries = 0

    def on_summary(self, snapshot: dict) -> None:
        self.summaries += 1
        pending = snapshot.get("stats", {}).get("pending", {"size": 0, "open": []})
        per_dst = Counter(e["key"]["ip.dst"] for e in pending["open"])
        fields = {"pending": pending["size"], "max_pending": self.ctx.params["max_pending"],
                  "top_destinations": per_dst.most_common(5)}
        self.ctx.log.info("half-open %s", fields)
        self.ctx.emit("half_open", **fields)


HANDLER = HalfOpenTcpHandler
