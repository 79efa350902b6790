"""ASL of syn_flood (specs/syn_flood.mon): who is attacking whom, from when to when.

The kernel sends a record for each SYN to a destination past the per-destination
threshold (per_dst SYNs in the current second; at most 1000 records a second). From
them, per victim:

- ``attack_started`` once, as soon as the victim has ``START_RECORDS`` records or
  ``START_NS`` has passed since its first: ``started_ns`` (its first record's time, the
  detection), ``victim``, ``port``, ``syn_rate`` (the kernel's SYN count to it in the
  last full second, or in this one if higher), ``sources`` (distinct so far),
  ``top_sources`` ([address, records], most first) and ``spoofed``: many sources with
  few SYNs each (more than SPOOFED_SHARE of the records from sources seen at most twice,
  and at least SPOOFED_MIN_SOURCES of them), the mark of random source addresses;
- ``attack_source`` for each source of a non-spoofed attack past ``source_threshold``
  records; with the deployment config's ASL option ``block: true`` it is blocked for
  ``block_ttl`` through ``ctx.block`` (dropped with ``xdpmon run --enforce``, logged
  otherwise). A spoofed flood's sources are never blocked: each address is used once,
  and blocking them only fills the blocklist (the README says what to do instead);
- ``attack_ended`` once the victim has had no record for ``QUIET_NS`` (its SYN rate fell
  below the threshold): ``started_ns``, ``ended_ns`` (its last record), ``duration_s``,
  ``records``, ``sources``, ``top_sources``, ``peak_syn_rate``, ``spoofed``, ``blocked``.

Time is the program's clock (event ``ts``, ``ctx.now()``): the capture's in replay, whose
ticks come once per second of capture time, so a capture replayed gives the same events
as the traffic seen live.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

S = 1_000_000_000


@dataclass
class Victim:
    first_ns: int
    last_ns: int
    port: int
    records: int = 0
    sources: Counter = field(default_factory=Counter)
    started: bool = False
    spoofed: bool = False
    peak_rate: int = 0
    blocked: list = field(default_factory=list)


class SynFloodHandler:
    app = "syn_flood"
    START_RECORDS = 100          # records before attack_started (top sources worth the name)
    START_NS = S // 5            # ... or this long after the first
    QUIET_NS = S                 # no record for this long: the attack ended
    SPOOFED_SHARE = 0.8
    SPOOFED_MIN_SOURCES = 20
    TOP = 5
    source_threshold = 50
    block_ttl = "5m"

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.victims: dict[str, Victim] = {}
        self.block = bool(ctx.options.get("block", False))

    # ---- the kernel's records ---------------------------------------------------------------------
    def on_packet(self, event) -> None:
        self._end_quiet(event.ts)
        victim, source = event.ip_dst, event.ip_src
        v = self.victims.get(victim)
        if v is None:
            v = self.victims[victim] = Victim(event.ts, event.ts, event.tcp_dport)
        v.last_ns = event.ts
        v.records += 1
        v.sources[source] += 1
        if not v.started and (v.records >= self.START_RECORDS or event.ts - v.first_ns >= self.START_NS):
            self._start(victim, v)
        if v.started and not v.spoofed and v.sources[source] == self.source_threshold:
            self._attack_source(victim, v, source)

    def on_tick(self) -> None:
        now = self.ctx.now()
        for victim, v in list(self.victims.items()):
            if not v.started and now - v.first_ns >= self.START_NS:
                self._start(victim, v)
        self._end_quiet(now)
        for victim, v in self.victims.items():
            v.peak_rate = max(v.peak_rate, self._rate(victim))

    def on_stop(self) -> None:
        pass                     # an attack still going on at the end is not ended: it did not end

    # ---- events ------------------------------------------------------------------------------------
    def _start(self, victim: str, v: Victim) -> None:
        v.started = True
        few = sum(n for n in v.sources.values() if n <= 2)
        v.spoofed = len(v.sources) >= self.SPOOFED_MIN_SOURCES and few > self.SPOOFED_SHARE * v.records
        v.peak_rate = max(v.peak_rate, self._rate(victim))
        self._emit("attack_started", victim=victim, port=v.port, started_ns=v.first_ns, syn_rate=v.peak_rate,
                   sources=len(v.sources), top_sources=self._top(v), spoofed=v.spoofed)
        if not v.spoofed:
            for source, n in v.sources.items():
                if n >= self.source_threshold:
                    self._attack_source(victim, v, source)

    def _attack_source(self, victim: str, v: Victim, source: str) -> None:
        self._emit("attack_source", victim=victim, source=source, records=v.sources[source])
        if self.block:
            try:
                self.ctx.block(source, ttl=self.block_ttl, reason=f"SYN flood source towards {victim}")
                v.blocked.append(source)
            except self.ctx.ControlError:
                pass                  # refused (allowlisted, blocklist full): logged by the runtime

    def _end_quiet(self, now: int) -> None:
        for victim, v in list(self.victims.items()):
            if now - v.last_ns >= self.QUIET_NS:
                del self.victims[victim]
                if v.started:
                    self._emit("attack_ended", victim=victim, started_ns=v.first_ns, ended_ns=v.last_ns,
                               duration_s=round((v.last_ns - v.first_ns) / S, 3), records=v.records,
                               sources=len(v.sources), top_sources=self._top(v), peak_syn_rate=v.peak_rate,
                               spoofed=v.spoofed, blocked=sorted(v.blocked))

    def _rate(self, victim: str) -> int:
        """The kernel's SYNs to ``victim`` in the last full second, or in this one if more."""
        for e in self.ctx.stats("syns"):
            if e["key"]["ip.dst"] == victim:
                return max(e["value"]["count"], e.get("last_window", {}).get("count", 0))
        return 0

    def _top(self, v: Victim) -> list:
        return [[s, n] for s, n in sorted(v.sources.items(), key=lambda t: (-t[1], t[0]))[:self.TOP]]

    def _emit(self, kind: str, **fields) -> None:
        self.ctx.log.info("%s %s", kind, fields)
        self.ctx.emit(kind, **fields)


HANDLER = SynFloodHandler
