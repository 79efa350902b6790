"""ASL of half_open_tcp (specs/half_open_tcp.mon): who has too many half-open
connections.

The kernel sends a summary (at most once a second) while more than
``max_pending`` handshakes are open. The summary is this app's snapshot; the
handler reports the destinations with the most pending handshakes.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("xdpmon.asl.half_open_tcp")


class HalfOpenTcpHandler:
    app = "half_open_tcp"

    def __init__(self, ctx=None) -> None:
        self.ctx = ctx
        self.summaries = 0

    def on_summary(self, snapshot: dict) -> None:
        self.summaries += 1
        pending = snapshot.get("stats", {}).get("pending", {"size": 0, "open": []})
        per_dst = Counter(e["key"]["ip.dst"] for e in pending["open"])
        fields = {"pending": pending["size"], "top_destinations": per_dst.most_common(5)}
        log.info("half-open %s", fields)
        if self.ctx is not None:
            self.ctx.emit("half_open", **fields)


HANDLER = HalfOpenTcpHandler
