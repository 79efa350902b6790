"""What a running instance shows each interval (runtime/monitor/reading.py).

- ``LiveScreen``: a ``rich`` live screen on a terminal, redrawn each interval: a
  header (instance, interfaces, uptime, frames/s, parse outcomes, verdicts,
  filters), per app its enable state (and until when), params, the top keys of
  its keyed statistics with their rates, rule firings, events/s and drops, then
  the fill level of every hash map and the interval's warnings;
- ``plain_line``: one line per interval, for a log or a pipe;
- (``--json``: the reading itself, one object per line, printed by the caller).
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from runtime.abi.manifest import Manifest
from runtime.abi.snapshot import key_text

from .view import _fmt, _rank, stat_table


def _rate(v) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:,.2f}M/s"
    if v >= 1e4:
        return f"{v / 1e3:,.1f}k/s"
    return f"{v:,.1f}/s"


def keyed_table(name: str, entries: list, rates: dict, top: int) -> Table:
    """A keyed statistic's top keys (by its first value), with per-second rates."""
    entries = sorted(entries, key=_rank, reverse=True)
    more = f" (top {top} of {len(entries):,} keys)" if len(entries) > top else f" ({len(entries):,} keys)"
    t = Table(title=name + more, title_justify="left")
    if not entries:
        t.add_column("no keys yet")
        return t
    rate_cols = [m for m in entries[0]["value"] if any(m in r for r in rates.values())]
    for col in entries[0]["key"]:
        t.add_column(col)
    for col in entries[0]["value"]:
        t.add_column(col, justify="right")
    for col in rate_cols:
        t.add_column(f"{col}/s", justify="right")
    for e in entries[:top]:
        r = rates.get(key_text(e["key"]), {})
        t.add_row(*[_fmt(v) for v in e["key"].values()], *[_fmt(v) for v in e["value"].values()],
                  *[_rate(r.get(c)) for c in rate_cols])
    return t


def _until(state: dict, now_ns: int) -> str:
    if state["mode"] == "always":
        return "always on"
    if not state["enabled"]:
        return "off"
    u = state.get("until_ns")
    return "on (until disabled)" if u is None else f"on for {(u - now_ns) / 1e9:,.0f}s more"


def header(reading, status: dict) -> Text:
    c, cr = reading.snapshot["counters"], reading.counter_rates
    ifaces = ", ".join(f"{a['name']} ({a['mode']})" for a in status.get("interfaces", ()))
    parse = "  ".join(f"{k[6:]} {c[k]:,}" for k in c if k.startswith("parse.") and c[k])
    t = Text()
    t.append(f"xdpmon {status.get('name', '')}", style="bold")
    t.append(f"  on {ifaces or '-'}  up {status.get('uptime_s', 0):,.0f}s\n")
    t.append(f"frames {c.get('frames', 0):,} ({_rate(cr.get('frames'))})  pass {c.get('verdict.pass', 0):,}"
             f"  drop {c.get('verdict.drop', 0):,}\n")
    t.append(f"parse: {parse or '-'}\n")
    n = status.get("blocks", 0)
    t.append(f"filters: {n:,} {'entry' if n == 1 else 'entries'}{' (enforcing)' if status.get('enforce') else ' (log only)'}"
             f"  would drop {c.get('blocklist.logged', 0):,}  dropped {c.get('blocklist.dropped', 0):,}")
    return t


def render_reading(reading, manifest: Manifest | dict, status: dict, top: int = 5) -> Group:
    man = Manifest.of(manifest)
    c, cr = reading.snapshot["counters"], reading.counter_rates
    enabled = status.get("enabled", {})
    parts = [header(reading, status)]
    for app in man.apps:
        snap = reading.snapshot["apps"][app.name]
        inner = []
        for name, stat in snap["stats"].items():
            if isinstance(stat, list):
                inner.append(keyed_table(name, stat, reading.rates.get(app.name, {}).get(name, {}), top))
            else:
                inner.append(stat_table(name, stat, top))
        if app.rules:
            fired = ", ".join(f"r{r.id} {c.get(r.fired_counter, 0):,}" for r in app.rules)
            ev = f"app.{app.name}.events"
            inner.append(Text(f"rules fired: {fired}; events {c.get(ev, 0):,} ({_rate(cr.get(ev))}); "
                              f"ring full {c.get(app.ringbuf_full_counter, 0):,}; "
                              f"queue dropped {c.get(f'asl.{app.name}.queue_dropped', 0):,}; "
                              f"rate-limited {c.get(app.rate_limited_counter, 0):,}"))
        params = ", ".join(f"{k}={v:,}" for k, v in snap["params"].items()) or "no params"
        state = _until(enabled.get(app.name, {"mode": app.mode, "enabled": snap["enabled"]}), reading.now_ns)
        parts.append(Panel(Group(*inner) if inner else Text("(no statistics)"),
                           title=f"[bold]{app.name}[/bold]  {state}; {params}", title_align="left"))
    ft = Table(title="map fill", title_justify="left")
    for col in ("map", "statistics", "entries", "fill"):
        ft.add_column(col, justify="right" if col in ("entries", "fill") else "left")
    for name, f in reading.fill.items():
        style = "bold red" if f["fill"] >= 0.8 else None
        ft.add_row(name, ", ".join(f["stats"]), f"{f['entries']:,} / {f['size']:,}", f"{f['fill']:.0%}", style=style)
    parts.append(ft)
    for w in reading.warnings:
        parts.append(Text(f"warning: {w}", style="yellow"))
    return Group(*parts)


def plain_line(reading, status: dict) -> str:
    """One line per interval: time, frames and rate, verdicts, events, filters, warnings."""
    c, cr = reading.snapshot["counters"], reading.counter_rates
    events = sum(v for k, v in c.items() if k.startswith("app.") and k.endswith(".events"))
    drops = sum(v for k, v in c.items() if k.endswith(".ringbuf_full") or k.endswith(".queue_dropped"))
    on = [a for a, s in status.get("enabled", {}).items() if s.get("mode") == "on_demand" and s.get("enabled")]
    line = (f"xdpmon {status.get('name', '')}: up {status.get('uptime_s', 0):.0f}s frames {c.get('frames', 0):,} "
            f"({cr.get('frames', 0):,.0f}/s) pass {c.get('verdict.pass', 0):,} drop {c.get('verdict.drop', 0):,} "
            f"events {events:,} event drops {drops:,} blocks {status.get('blocks', 0):,} "
            f"on-demand on: {','.join(on) or '-'}")
    if reading.warnings:
        line += f" warnings {len(reading.warnings)}: " + "; ".join(reading.warnings)
    return line


class LiveScreen:
    """The rich live screen (a terminal)."""

    def __init__(self, manifest, top: int = 5, console: Console | None = None):
        self.manifest = manifest
        self.top = top
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, screen=False, transient=False)

    def __enter__(self):
        self.live.__enter__()
        return self

    def update(self, reading, status: dict) -> None:
        self.live.update(render_reading(reading, self.manifest, status, self.top), refresh=True)

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)
