"""ASL of dns_amplification (specs/dns_amplification.mon): reflection attacks, per victim.

The kernel sends a record for each DNS response to a destination that received more
than ``min_bytes`` of responses in 10 s and more than ``ratio`` times the bytes of its
own queries (at most 100 records a second). Per victim this handler emits
``amplification_started`` at its first record (``victim``, ``started_ns``, the kernel's
``response_bytes`` and ``query_bytes`` to and from it in the window, and ``factor``, their
ratio, None with no query at all) and ``amplification_ended`` once it has had no record
for ``QUIET_NS`` (``started_ns``, ``ended_ns``, ``records``, ``reflectors``: how many DNS
servers answered it, ``top_reflectors`` ``[address, records]`` (five), ``bytes_seen``:
the sizes of the records' responses); severities critical and notice. Time is the program's clock (``event.ts``,
``ctx.now()``): a replayed capture gives the same events as live traffic.
"""

from __future__ import annotations

from collections import Counter

S = 1_000_000_000


class DnsAmplificationHandler:
    app = "dns_amplification"
    QUIET_NS = 2 * S
    TOP = 5

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.victims: dict[str, dict] = {}

    def on_packet(self, event) -> None:
        self._end_quiet(event.ts)
        v = self.victims.get(event.ip_dst)
        if v is None:
            v = self.victims[event.ip_dst] = {"first": event.ts, "last": event.ts, "records": 0,
                                             "reflectors": Counter(), "bytes": 0}
            resp, query = self._bytes(event.ip_dst)
            self.ctx.emit("amplification_started", severity="critical", victim=event.ip_dst, started_ns=event.ts, response_bytes=resp,
                          query_bytes=query, factor=round(resp / query, 1) if query else None)
        v["last"] = event.ts
        v["records"] += 1
        v["reflectors"][event.ip_src] += 1
        v["bytes"] += event.pkt_len

    def on_tick(self) -> None:
        self._end_quiet(self.ctx.now())

    def _bytes(self, victim: str) -> tuple[int, int]:
        def of(stat):
            key = "ip.dst" if stat == "responses" else "ip.src"
            return next((e["value"]["bytes"] for e in self.ctx.stats(stat) if e["key"][key] == victim), 0)
        return of("responses"), of("queries")

    def _end_quiet(self, now: int) -> None:
        for victim, v in list(self.victims.items()):
            if now - v["last"] >= self.QUIET_NS:
                del self.victims[victim]
                top = sorted(v["reflectors"].items(), key=lambda t: (-t[1], t[0]))[:self.TOP]
                self.ctx.emit("amplification_ended", severity="notice", victim=victim, started_ns=v["first"], ended_ns=v["last"],
                              records=v["records"], reflectors=len(v["reflectors"]),
                              top_reflectors=[list(t) for t in top], bytes_seen=v["bytes"])


HANDLER = DnsAmplificationHandler
