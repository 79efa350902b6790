"""ASL of syn_flood (specs/syn_flood.mon): who is attacking whom.

The kernel sends one record per SYN over the per-destination threshold (rate
limited). This handler counts SYNs per (victim, source) and reports:
  - "victim" once per victim, when it first shows up (with the kernel's count of
    SYNs to it in the current second, read with ctx.stats),
  - "attack_source" for each source past ``source_threshold`` SYNs, and blocks
    it for ``block_ttl`` when the deployment config's ASL options say
    ``block: true`` (log-only unless xdpmon runs with --enforce),
  - on each tick, the victims with their SYN counts and top sources.
Spoofed floods have many sources with few SYNs each; a few sources with many
SYNs are worth filtering.
"""

from __future__ import annotations

from collections import Counter, defaultdict


class SynFloodHandler:
    app = "syn_flood"
    source_threshold = 50
    block_ttl = "5m"

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.by_victim: dict[str, Counter] = defaultdict(Counter)
        self.flagged: set[tuple[str, str]] = set()
        self.block = bool(ctx.options.get("block", False))

    def on_packet(self, event) -> None:
        victim, source = event.ip_dst, event.ip_src
        sources = self.by_victim[victim]
        if not sources:
            syns = next((e["value"]["count"] for e in self.ctx.stats("syns") if e["key"]["ip.dst"] == victim), 0)
            self._emit("victim", victim=victim, port=event.tcp_dport, syns_this_window=syns, ts=event.ts)
        sources[source] += 1
        if sources[source] == self.source_threshold and (victim, source) not in self.flagged:
            self.flagged.add((victim, source))
            self._emit("attack_source", victim=victim, source=source, syns=sources[source], ts=event.ts)
            if self.block:
                try:
                    self.ctx.block(source, ttl=self.block_ttl, reason=f"SYN flood source towards {victim}")
                except self.ctx.ControlError:
                    pass                  # refused (allowlisted, blocklist full): logged by the runtime

    def on_tick(self) -> None:
        for victim, sources in self.by_victim.items():
            self._emit("victim_summary", victim=victim, syns=sum(sources.values()), sources=len(sources),
                       top=[s for s, _ in sources.most_common(3)])

    def _emit(self, kind: str, **fields) -> None:
        self.ctx.log.info("%s %s", kind, fields)
        self.ctx.emit(kind, **fields)


HANDLER = SynFloodHandler
