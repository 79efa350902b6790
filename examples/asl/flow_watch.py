"""ASL of flow_watch (specs/flow_watch.mon): when, and why, the SYN flood detector was enabled.

The kernel sends a record when one of flow_watch's rules switches syn_flood on while it
was off (a rule that fires while it is on only extends its time). For each, this
handler emits ``enabled``: ``app`` (the app switched on), ``at_ns`` (the program's
clock at that frame), ``signal`` (``syns_per_destination``: the SYNs to one destination
in the second, syn_flood's own count, passed ``syn_threshold``; ``distinct_flows``: the flows of the
second passed ``flow_threshold``) with that threshold, and the distinct flows of the
second so far. A timeline of an attack starts here: the detector, reading the same
count, can report from this moment on.
"""

from __future__ import annotations

SIGNALS = {0: ("syns_per_destination", "syn_threshold"), 1: ("distinct_flows", "flow_threshold")}


class FlowWatchHandler:
    app = "flow_watch"

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def on_enable(self, event) -> None:
        signal, param = SIGNALS.get(event.rule, (f"rule {event.rule}", None))
        flows = self.ctx.stats("flows").get("value", {}).get("distinct")
        self.ctx.emit("enabled", app=event.message, at_ns=event.ts, signal=signal,
                      threshold=self.ctx.params.get(param) if param else None, flows=flows)


HANDLER = FlowWatchHandler
