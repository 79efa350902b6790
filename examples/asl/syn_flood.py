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
  otherwise). A spoofed flood's sources are not blocked one by one: each address is
  used once, and blocking them only fills the blocklist. With ``block: true`` a spoofed
  flood is blocked as the smallest prefix holding every source seen
  (``attack_prefix``), when that prefix is at least ``spoofed_prefix_min`` bits long
  (default /20, at most 4,096 addresses; IPv6 /48): the mark of sources forged inside their own network (where
  the origin filters foreign sources, BCP 38, but not its own). The prefix widens as
  sources outside it appear (their records; the kernel sends at most 1000 a second). Sources forged from anywhere make no prefix that long:
  nothing is blocked, and ``attack_prefix`` says so (``blocked: false``);
- ``attack_ended`` once the victim has had no record for ``QUIET_NS`` (its SYN rate fell
  below the threshold) and the prefixes blocked for it stopped counting hits for as long
  (a flood that is dropped before the apps sends no record, but is not over):
  ``started_ns``, ``ended_ns`` (its last record or hit), ``duration_s``, ``records``,
  ``sources``, ``top_sources``, ``peak_syn_rate``, ``spoofed``, ``blocked`` and
  ``blocked_hits`` (frames the blocks matched: dropped with --enforce).

Severities: ``attack_started`` critical, ``attack_source`` and ``attack_prefix`` warning,
``attack_ended`` notice.

Time is the program's clock (event ``ts``, ``ctx.now()``): the capture's in replay, whose
ticks come once per second of capture time, so a capture replayed gives the same events
as the traffic seen live.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

S = 1_000_000_000
# the events' severities (ctx.emit's; info otherwise): what a log pipeline or syslog routes on
SEVERITY = {"attack_started": "critical", "attack_source": "warning", "attack_prefix": "warning",
            "attack_ended": "notice"}


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
    prefix: str | None = None          # a spoofed flood's sources' prefix, as blocked
    hits: int = 0                      # the hits of its blocks at the last look
    hits_ns: int = 0                   # when they last grew


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
    spoofed_prefix_min = 20          # IPv4: a site's block, at most 4,096 addresses
    spoofed_prefix_min6 = 48

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.victims: dict[str, Victim] = {}
        self.block = bool(ctx.options.get("block", False))
        self.spoofed_prefix_min = int(ctx.options.get("spoofed_prefix_min", self.spoofed_prefix_min))

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
        elif v.started and v.spoofed and self.block and not _inside(source, v.prefix):
            self._block_prefix(victim, v)              # a source outside the block: widen it now

    def on_tick(self) -> None:
        now = self.ctx.now()
        for victim, v in list(self.victims.items()):
            if not v.started and now - v.first_ns >= self.START_NS:
                self._start(victim, v)
        self._look_at_blocks(now)
        self._end_quiet(now)
        for victim, v in self.victims.items():
            v.peak_rate = max(v.peak_rate, self._rate(victim))
            if v.started and v.spoofed and self.block:
                self._block_prefix(victim, v)

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
        elif self.block:
            self._block_prefix(victim, v)

    def _block_prefix(self, victim: str, v: Victim) -> None:
        """Block the smallest prefix holding every source of a spoofed flood, if long enough."""
        net = covering_prefix(v.sources)
        if net is None or str(net) == v.prefix:
            return
        least = self.spoofed_prefix_min if net.version == 4 else self.spoofed_prefix_min6
        first, v.prefix = v.prefix is None, str(net)
        if net.prefixlen < least:                       # said once; the prefix only widens from here
            if first:
                self._emit("attack_prefix", victim=victim, prefix=str(net), sources=len(v.sources), blocked=False,
                           why=f"the sources spread over a /{net.prefixlen}, shorter than /{least}")
            return
        try:
            self.ctx.block(str(net), ttl=self.block_ttl, reason=f"spoofed SYN flood towards {victim}")
        except self.ctx.ControlError as e:
            self._emit("attack_prefix", victim=victim, prefix=str(net), sources=len(v.sources), blocked=False,
                       why=str(e))
            return
        v.blocked.append(str(net))
        self._emit("attack_prefix", victim=victim, prefix=str(net), sources=len(v.sources), blocked=True)

    def _look_at_blocks(self, now: int) -> None:
        """Note when the hits of each victim's blocks last grew: a dropped flood is still on."""
        if not any(v.blocked for v in self.victims.values()):
            return
        try:
            hits = {e["prefix"]: e["hits"] for e in self.ctx.blocks()}
        except self.ctx.ControlError:
            return
        for v in self.victims.values():
            if v.blocked:
                h = sum(hits.get(p, 0) for p in set(v.blocked))
                if h > v.hits:
                    v.hits, v.hits_ns = h, now

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
            last = max(v.last_ns, v.hits_ns)
            if now - last >= self.QUIET_NS:
                del self.victims[victim]
                if v.started:
                    self._emit("attack_ended", victim=victim, started_ns=v.first_ns, ended_ns=last,
                               duration_s=round((last - v.first_ns) / S, 3), records=v.records,
                               sources=len(v.sources), top_sources=self._top(v), peak_syn_rate=v.peak_rate,
                               spoofed=v.spoofed, blocked=sorted(set(v.blocked)), blocked_hits=v.hits)

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
        self.ctx.emit(kind, severity=SEVERITY.get(kind, "info"), **fields)


def _inside(address: str, prefix: str | None) -> bool:
    if prefix is None:
        return False
    return ipaddress.ip_address(address) in ipaddress.ip_network(prefix)


def covering_prefix(sources) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The smallest prefix holding every address of ``sources`` (None: none, or both families)."""
    addrs = [ipaddress.ip_address(a) for a in sources]
    if not addrs or len({a.version for a in addrs}) > 1:
        return None
    lo, hi = int(min(addrs)), int(max(addrs))
    bits = addrs[0].max_prefixlen
    plen = bits - (lo ^ hi).bit_length()
    net = ipaddress.IPv4Network if bits == 32 else ipaddress.IPv6Network
    return net((lo >> (bits - plen) << (bits - plen), plen))


HANDLER = SynFloodHandler
