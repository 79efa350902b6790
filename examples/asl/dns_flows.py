"""ASL of dns_flows (specs/dns_flows.mon): a periodic DNS report.

dns_flows has no rules: the kernel keeps per-flow counts and bytes and the response
codes, and this handler reads them (``ctx.stats``) every ``every`` ticks (seconds; the
ASL option ``every``, default 10) and emits one ``dns_report``:

- ``queries`` and ``responses`` (packets to and from port 53) and their bytes, since
  the start;
- ``rcodes``: {rcode name: responses}, and ``nxdomain_share`` (of all responses);
- ``top_clients``: the ``top`` (option, default 5) clients by bytes of queries and
  responses, ``[address, packets, bytes]``;
- ``servers``: the ``top`` servers by bytes, each ``[address, query bytes, response
  bytes, response / query byte ratio]`` (None: responses to no query; a ratio far above
  the usual 1..4 is the mark of reflection: see dns_amplification's alerts), largest
  ratio first, None before all;
- ``new_since_last``: queries since the last report.

Reports are driven by the tick, so ``replay --asl`` (a tick per second of capture time)
gives the same reports as the traffic seen live.
"""

from __future__ import annotations

from runtime.asl.periodic import PeriodicReport

from collections import defaultdict

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class DnsFlowsHandler(PeriodicReport):
    app = "dns_flows"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.queries_before = 0

    def report(self) -> None:
        q = {"packets": 0, "bytes": 0}
        r = {"packets": 0, "bytes": 0}
        clients: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        servers: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for e in self.ctx.stats("flows"):
            k, v = e["key"], e["value"]
            n, b = v["count"], v["sum_pkt_len"]
            if k["udp.dport"] == 53:                    # a query: client -> server
                client, server, side, totals = k["ip.src"], k["ip.dst"], 0, q
            else:                                       # a response: server -> client
                client, server, side, totals = k["ip.dst"], k["ip.src"], 1, r
            totals["packets"] += n
            totals["bytes"] += b
            clients[client][0] += n
            clients[client][1] += b
            servers[server][side] += b
        rcodes = {RCODES.get(e["key"]["dns.rcode"], str(e["key"]["dns.rcode"])): e["value"]["count"]
                  for e in self.ctx.stats("rcodes")}
        answered = sum(rcodes.values())
        top = sorted(clients.items(), key=lambda t: (-t[1][1], t[0]))[:self.top]
        busiest = sorted(servers.items(), key=lambda t: (-(t[1][0] + t[1][1]), t[0]))[:self.top]
        by_ratio = sorted(((s, qb, rb, round(rb / qb, 2) if qb else None) for s, (qb, rb) in busiest),
                          key=lambda t: (-(t[3] if t[3] is not None else float("inf")), t[0]))
        self.ctx.emit("dns_report", queries=q["packets"], query_bytes=q["bytes"], responses=r["packets"],
                      response_bytes=r["bytes"], rcodes=rcodes,
                      nxdomain_share=round(rcodes.get("NXDOMAIN", 0) / answered, 4) if answered else 0.0,
                      top_clients=[[c, n, b] for c, (n, b) in top], servers=[list(t) for t in by_ratio],
                      new_since_last=q["packets"] - self.queries_before)
        self.queries_before = q["packets"]


HANDLER = DnsFlowsHandler
