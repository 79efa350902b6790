"""ASL of syn_flood (specs/syn_flood.mon): who is attacking whom.

The kernel sends one record per SYN over the per-destination threshold (rate
limited). This handler counts SYNs per (victim, source) and reports:
  - "victim" once per victim, when it first shows up,
  - "attack_source" for each source past ``source_threshold`` SYNs,
  - on each tick, the victims with their SYN counts and top sources.
Spoofed floods have many sources with few SYNs each; a few sources with many
SYNs are worth filtering.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

log = logging.getLogger("xdpmon.asl.syn_flood")


@dataclass(frozen=True)
class Event:
    ts: int
    rule: int
    type: str
    message: str = ""


class SynFloodHandler:
    app = "syn_flood"
    source_threshold = 50

    def __init__(self, ctx=None) -> None:
        self.ctx = ctx
        self.by_victim: dict[str, Counter] = defaultdict(Counter)
        self.flagged: set[tuple[str, str]] = set()

    def on_packet(self, event) -> None:
        victim, source = event.ip_dst, event.ip_src
        sources = self.by_victim[victim]
        if not sources:
            self._emit("victim", victim=victim, port=event.tcp_dport, ts=event.ts)
        sources[source] += 1
        if sources[source] == self.source_threshold and (victim, source) not in self.flagged:
            self.flagged.add((victim, source))
            self._emit("attack_source", victim=victim, source=source, syns=sources[source], ts=event.ts)

    def on_tick(self) -> None:
        for victim, sources in self.by_victim.items():
            self._emit("victim_summary", victim=victim, syns=sum(sources.values()), sources=len(sources),
                       top=[s for s, _ in sources.most_common(3)])

    def _emit(self, kind: str, **fields) -> None:
        log.info("%s %s", kind, fields)
        if self.ctx is not None:
            self.ctx.emit(kind, **fields)


HANDLER = SynFloodHandler
