"""What happened when in a demo, against the ground truth (scenario.py).

``Timeline.build(...)`` takes what the senders reported (the flood's first and last
frame on the program's clock), the thresholds of the running program, and the events
the ASL emitted, and answers the demo's questions:

- when the flood began (truth), and when its rate passed syn_flood's per-destination
  threshold (computed: the ``per_dst + 1``-th SYN inside one of the program's windows);
- when flow_watch enabled syn_flood (its ``enabled`` event: the kernel's time);
- when syn_flood's ASL reported the attack (``attack_started``: its first record, and
  the moment the event was written), the **detection latency** (the report after the
  crossing), the victim found and the true one;
- false alarms: attacks reported for another victim, or before the flood began;
- when the attack was reported over, and how long after the flood's real end;
- with enforcement: the prefixes blocked, the frames they dropped against the flood's
  frames sent, and the benign sources inside them (none, so no benign flow dropped).

Times are on the program's clock (CLOCK_MONOTONIC); ``wall_minus_mono`` turns the
events' wall-clock ``time_ns`` into it. The program reads the coarse clock (the time of
the last tick): a record's time may be up to a tick (4 ms) before the frame's, so the
enable can show a few ms before the flood's first frame, timed by the sender. ``rows()`` is the table the demo prints,
``to_json()`` what ``build/demo-timeline.json`` keeps.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .scenario import S, Scenario, crossing_ns


@dataclass
class Timeline:
    scenario: Scenario
    t0_ns: int                                   # the benign traffic's start
    flood_first_ns: int | None
    flood_last_ns: int | None
    flood_sent: int
    per_dst: int
    syn_threshold: int
    crossing_ns: int | None = None
    trigger_crossing_ns: int | None = None
    enabled_ns: int | None = None
    enabled_signal: str | None = None
    first_record_ns: int | None = None
    reported_ns: int | None = None
    victim_found: str | None = None
    spoofed: bool | None = None
    ended_reported_ns: int | None = None
    ended_last_ns: int | None = None
    false_alarms: list = field(default_factory=list)
    blocked: list = field(default_factory=list)
    dropped: int = 0
    would_drop: int = 0
    benign_in_blocked: int = 0
    benign_sent: int = 0
    backend: str | None = None
    frames_sent: int = 0                         # benign and flood, as the senders counted them
    frames_seen: int = 0                         # by the program
    veth_dropped: int = 0                        # the monitor veth's rx_dropped (frames the stack refused
                                                 # after xdpmon passed them, e.g. QinQ: no VLAN device)

    @classmethod
    def build(cls, sc: Scenario, *, t0_ns: int, flood: dict | None, per_dst: int, syn_threshold: int,
              events: list[dict], wall_minus_mono: int, counters: dict, blocks: list[dict],
              benign_sources: set[str], benign_sent: int) -> "Timeline":
        first = flood.get("first_ns") if flood else None
        last = flood.get("last_ns") if flood else None
        sent = flood.get("sent", 0) if flood else 0
        tl = cls(sc, t0_ns, first, last, sent, per_dst, syn_threshold, benign_sent=benign_sent,
                 backend=flood.get("backend") if flood else None)
        if first is not None and sent:
            rate = flood.get("rate_pps") or sc.rate_pps
            tl.crossing_ns = crossing_ns(first, rate, per_dst)
            tl.trigger_crossing_ns = crossing_ns(first, rate, syn_threshold)

        def mono(e):
            return e["time_ns"] - wall_minus_mono

        for e in events:
            f = e.get("fields", {})
            if e["app"] == "flow_watch" and e["kind"] == "enabled" and tl.enabled_ns is None:
                tl.enabled_ns, tl.enabled_signal = f.get("at_ns"), f.get("signal")
            elif e["app"] == "syn_flood" and e["kind"] == "attack_started":
                true_one = f.get("victim") == sc.victim and (first is None or f.get("started_ns", 0) >= first)
                if true_one and tl.reported_ns is None:
                    tl.first_record_ns, tl.reported_ns = f.get("started_ns"), mono(e)
                    tl.victim_found, tl.spoofed = f.get("victim"), f.get("spoofed")
                elif not true_one:
                    tl.false_alarms.append({"victim": f.get("victim"), "at_s": round((mono(e) - t0_ns) / S, 3)})
            elif e["app"] == "syn_flood" and e["kind"] == "attack_ended" and f.get("victim") == sc.victim:
                if tl.ended_reported_ns is None and tl.reported_ns is not None:
                    tl.ended_reported_ns, tl.ended_last_ns = mono(e), f.get("ended_ns")
        tl.blocked = [b["prefix"] for b in blocks]
        tl.dropped = counters.get("blocklist.dropped", 0)
        tl.would_drop = counters.get("blocklist.logged", 0)
        nets = [ipaddress.ip_network(p) for p in tl.blocked]
        tl.benign_in_blocked = sum(1 for s in benign_sources
                                   if any(ipaddress.ip_address(s) in n for n in nets))
        return tl

    # ---- derived --------------------------------------------------------------------------------
    def _s(self, t: int | None) -> float | None:
        return None if t is None else round((t - self.t0_ns) / S, 3)

    @property
    def latency_s(self) -> float | None:
        """The report after the flood's rate passed the detector's threshold."""
        if self.reported_ns is None or self.crossing_ns is None:
            return None
        return round((self.reported_ns - self.crossing_ns) / S, 3)

    @property
    def end_lag_s(self) -> float | None:
        if self.ended_reported_ns is None or self.flood_last_ns is None:
            return None
        return round((self.ended_reported_ns - self.flood_last_ns) / S, 3)

    def verdicts(self) -> dict:
        return {"detected": self.reported_ns is not None,
                "victim_identified": self.victim_found == self.scenario.victim,
                "latency_ok": self.latency_s is not None and self.latency_s <= 1.0,
                "end_reported_within_2s": self.end_lag_s is not None and self.end_lag_s <= 2.0,
                "false_alarms": len(self.false_alarms),
                "benign_dropped": self.benign_in_blocked if self.scenario.enforce else 0}

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, when in s from the start, note)."""
        sc = self.scenario

        def t(x):
            v = self._s(x)
            return "-" if v is None else f"{v:8.3f}"
        r = [("benign traffic begins", t(self.t0_ns), f"{self.benign_sent:,} frames sent in all")]
        r.append(("flood begins (truth)", t(self.flood_first_ns),
                  f"{self.flood_sent:,} SYNs to {sc.victim} from {sc.flood_net}"
                  + (f" ({self.backend})" if self.backend else "")))
        r.append((f"flood passes flow_watch's {self.syn_threshold:,} SYN/s", t(self.trigger_crossing_ns), "computed"))
        r.append((f"flood passes syn_flood's {self.per_dst:,} SYN/s", t(self.crossing_ns), "computed"))
        r.append(("flow_watch enables syn_flood", t(self.enabled_ns), self.enabled_signal or "never"))
        r.append(("syn_flood's first record", t(self.first_record_ns), ""))
        r.append(("attack_started reported", t(self.reported_ns),
                  f"victim {self.victim_found or '-'} (true: {sc.victim}), "
                  f"{'spoofed' if self.spoofed else 'real'} sources" if self.reported_ns else "not reported"))
        r.append(("detection latency", f"{self.latency_s:8.3f}" if self.latency_s is not None else "-",
                  "report after the rate crossed the threshold (target <= 1 s)"))
        r.append(("flood ends (truth)", t(self.flood_last_ns), ""))
        r.append(("attack_ended reported", t(self.ended_reported_ns),
                  f"{self.end_lag_s:.3f} s after the end (target <= 2 s)" if self.end_lag_s is not None else
                  "not reported"))
        r.append(("frames seen by xdpmon", f"{self.frames_seen:,}",
                  f"of {self.frames_sent:,} sent: {self.frames_sent - self.frames_seen:,} lost before it"))
        r.append(("false alarms", str(len(self.false_alarms)),
                  ", ".join(f"{a['victim']} at {a['at_s']} s" for a in self.false_alarms) or "none"))
        if sc.enforce:
            share = f" ({self.dropped / self.flood_sent:.1%} of the flood)" if self.flood_sent else ""
            r.append(("enforced", ", ".join(self.blocked) or "nothing blocked",
                      f"dropped {self.dropped:,} frames{share}; benign sources inside: {self.benign_in_blocked}"))
        return r

    def to_json(self) -> dict:
        return {"scenario": self.scenario.to_json(), "backend": self.backend,
                "t0_ns": self.t0_ns, "flood_first_s": self._s(self.flood_first_ns),
                "flood_last_s": self._s(self.flood_last_ns), "flood_sent": self.flood_sent,
                "trigger_crossing_s": self._s(self.trigger_crossing_ns), "crossing_s": self._s(self.crossing_ns),
                "enabled_s": self._s(self.enabled_ns), "enabled_signal": self.enabled_signal,
                "first_record_s": self._s(self.first_record_ns), "reported_s": self._s(self.reported_ns),
                "latency_s": self.latency_s, "victim_found": self.victim_found, "spoofed": self.spoofed,
                "ended_reported_s": self._s(self.ended_reported_ns), "end_lag_s": self.end_lag_s,
                "false_alarms": self.false_alarms, "blocked": self.blocked, "dropped": self.dropped,
                "would_drop": self.would_drop, "benign_in_blocked": self.benign_in_blocked,
                "benign_sent": self.benign_sent, "frames_sent": self.frames_sent, "frames_seen": self.frames_seen,
                "veth_dropped": self.veth_dropped, "verdicts": self.verdicts()}
