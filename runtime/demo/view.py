"""The live view of a demo: compact, so that it fits a terminal.

Each interval: the monitor's header (runtime/ui/live_view.py ``header``), the demo's
phase (benign traffic, the flood on, over) with the time, the on-demand apps' state,
syn_flood's and flow_watch's rule firings, and the last events the ASL emitted. On a
terminal it is a rich live screen; elsewhere one line per interval
(``plain_line``) and each new event on a line of its own.
"""

from __future__ import annotations

import json

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runtime.ui.live_view import _until, header, plain_line

SHOWN_EVENTS = 8


def phase(sc, t_s: float) -> str:
    if t_s < 0:
        return "starting"
    if t_s < sc.attack_at_s:
        return f"benign traffic; the flood starts at {sc.attack_at_s:g} s"
    if t_s < sc.attack_at_s + sc.attack_for_s:
        return f"FLOOD: {sc.rate_pps:,} SYN/s to {sc.victim} from {sc.flood_net} (until {sc.attack_at_s + sc.attack_for_s:g} s)"
    return "benign traffic; the flood is over"


def _event_line(e: dict, t0_wall: int) -> str:
    f = dict(e.get("fields", {}))
    for k in ("top_sources", "servers", "top_clients", "top_destinations", "histogram", "sizes"):
        f.pop(k, None)
    text = json.dumps(f, default=str)
    if len(text) > 110:
        text = text[:107] + "..."
    return f"{(e['time_ns'] - t0_wall) / 1e9:7.2f}s {e['app']}.{e['kind']} {text}"


class DemoView:
    def __init__(self, sc, manifest, events: list, t0_wall_ns: int, rich: bool, console: Console | None = None):
        self.sc, self.manifest, self.events, self.t0_wall = sc, manifest, events, t0_wall_ns
        self.rich = rich
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False) if rich else None
        self.printed = 0

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            return self.live.__exit__(*exc)
        return False

    def update(self, reading, status: dict, t_s: float) -> None:
        if not self.rich:
            print(f"[{t_s:6.1f}s] {phase(self.sc, t_s)} | {plain_line(reading, status)}", flush=True)
            for e in self.events[self.printed:]:
                print("    event " + _event_line(e, self.t0_wall), flush=True)
            self.printed = len(self.events)
            return
        c = reading.snapshot["counters"]
        t = Table(title="apps", title_justify="left")
        for col in ("app", "state", "rules fired", "events"):
            t.add_column(col)
        for app in self.manifest.apps:
            st = status.get("enabled", {}).get(app.name, {"mode": app.mode, "enabled": True})
            fired = ", ".join(f"r{r.id} {c.get(r.fired_counter, 0):,}" for r in app.rules) or "-"
            t.add_row(app.name, _until(st, reading.now_ns), fired, f"{c.get(f'app.{app.name}.events', 0):,}")
        ev = Text("\n".join(_event_line(e, self.t0_wall) for e in self.events[-SHOWN_EVENTS:]) or "(none yet)")
        self.live.update(Group(header(reading, status), Text(f"\ndemo at {t_s:.1f} s: {phase(self.sc, t_s)}\n",
                                                               style="bold"), t, Text("events:", style="bold"), ev),
                         refresh=True)
