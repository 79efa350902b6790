"""ASL of pkt_sizes (specs/pkt_sizes.mon): a periodic report of frame sizes per protocol.

No rules: the kernel keeps a log2 histogram of frame lengths, a count and bytes per IP
protocol. Every ``every`` ticks (seconds; ASL option ``every``, default 10) this handler
emits one ``size_report``: per protocol (by name where known) ``packets``, ``bytes``,
``mean_bytes``, ``small_share`` (frames under 128 bytes: floods and ACKs are small) and
``sizes`` (the histogram, ``{"lo-hi": frames}``), since the start.
"""

from __future__ import annotations

from runtime.asl.periodic import PeriodicReport

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}
SMALL = 128


class PktSizesHandler(PeriodicReport):
    app = "pkt_sizes"

    def report(self) -> None:
        out = {}
        for e in self.ctx.stats("sizes"):
            v, proto = e["value"], e["key"]["ip.proto"]
            small = sum(n for bucket, n in v["hist_pkt_len"].items() if int(bucket.split("-")[1]) < SMALL)
            out[PROTOCOLS.get(proto, str(proto))] = {
                "packets": v["count"], "bytes": v["bytes"], "mean_bytes": round(v["bytes"] / v["count"], 1),
                "small_share": round(small / v["count"], 4), "sizes": v["hist_pkt_len"]}
        self.ctx.emit("size_report", protocols=out)


HANDLER = PktSizesHandler
