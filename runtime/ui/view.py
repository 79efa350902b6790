"""Show a snapshot as rich tables: per app its statistics (top keys; windowed
ones now and in the last completed window), the T3 firings and events; then the
global counters."""

from __future__ import annotations

from collections import Counter

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from runtime.abi.manifest import Manifest


def _fmt(v) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k}:{n}" for k, n in v.items()) or "-"
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _first_int(values: dict) -> int:
    for v in values.values():
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return 0


def _rank(entry) -> tuple[int, int]:
    """Keys by their first number now, then in the last window."""
    return _first_int(entry["value"]), _first_int(entry.get("last_window", {}))


def window_text(ns: int) -> str:
    """A window's length as written in a spec (``1s``, ``100ms``)."""
    for unit, mult in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % mult == 0:
            return f"{ns // mult}{unit}"
    return f"{ns}ns"


def stat_table(name: str, stat, top: int, window: dict | None = None) -> Table:
    """One statistic; a windowed one (``window``: its entry of the snapshot's
    ``windows``) shows its values now and in the last completed window."""
    if isinstance(stat, dict) and "size" in stat:          # track table
        t = Table(title=f"{name}: {stat['size']:,} open", title_justify="left", expand=False)
        entries = stat["open"]
        if entries:
            for col in entries[0]["key"]:
                t.add_column(col)
            t.add_column("opened (ns)", justify="right")
            for e in entries[:top]:
                t.add_row(*[_fmt(v) for v in e["key"].values()], _fmt(e["value"]["opened"]))
        return t
    last = f"last {window_text(window['window_ns'])}" if window else None
    title = f"{name}, window {window_text(window['window_ns'])}" if window else name
    if isinstance(stat, dict):                              # unkeyed: a row now, a row for the last window
        t = Table(title=title, title_justify="left")
        if last:
            t.add_column("window")
        for col in stat["value"]:
            t.add_column(col, justify="right")
        if last:
            t.add_row("now", *[_fmt(v) for v in stat["value"].values()])
            t.add_row(last, *[_fmt(stat["last_window"].get(k, "not kept")) for k in stat["value"]])
        else:
            t.add_row(*[_fmt(v) for v in stat["value"].values()])
        return t
    entries = sorted(stat, key=_rank, reverse=True)
    more = f" (top {top} of {len(entries):,} keys)" if len(entries) > top else f" ({len(entries):,} keys)"
    t = Table(title=title + more, title_justify="left")
    if not entries:
        t.add_column("no keys yet")
        return t
    for col in entries[0]["key"]:
        t.add_column(col)
    for col in entries[0]["value"]:
        if last:                                            # a column now, a column for the last window
            t.add_column(f"{col} now", justify="right")
            t.add_column(f"{col} {last}", justify="right")
        else:
            t.add_column(col, justify="right")
    for e in entries[:top]:
        values = []
        for k, v in e["value"].items():
            values.append(_fmt(v))
            if last:
                values.append(_fmt(e["last_window"][k]))
        t.add_row(*[_fmt(v) for v in e["key"].values()], *values)
    return t


def render(snapshot: dict, manifest: Manifest | dict, top: int = 10, console: Console | None = None,
           asl: dict | None = None, event_counts: Counter | None = None) -> None:
    """Print ``snapshot``; events are counted from ``event_counts`` ({(app, type): n})
    when given, else from the snapshot's events."""
    console = console or Console()
    counters = snapshot["counters"]
    by_app = event_counts if event_counts is not None else Counter((e["app"], e["type"]) for e in snapshot["events"])
    for app in Manifest.of(manifest).apps:
        snap = snapshot["apps"][app.name]
        windows = snap.get("windows", {})
        parts = [stat_table(name, stat, top, windows.get(name)) for name, stat in snap["stats"].items()]
        if app.rules:
            rt = Table(title="t3 rules", title_justify="left")
            rt.add_column("rule")
            rt.add_column("when / actions")
            rt.add_column("fired", justify="right")
            for r in app.rules:
                acts = "; ".join(a.text for a in r.actions)
                # Text, not markup: "queries[ip.dst]" or an alert's "[...]" would be read as styles
                rt.add_row(f"{r.id} (line {r.line})", Text(f"{r.cond_text}\n-> {acts}"),
                           _fmt(counters.get(r.fired_counter, 0)))
            parts.append(rt)
            ev = ", ".join(f"{t}: {n:,}" for (a, t), n in sorted(by_app.items()) if a == app.name) or "none"
            dropped = counters.get(app.rate_limited_counter, 0)
            full = counters.get(app.ringbuf_full_counter, 0)
            parts.append(f"events: {ev}; rate-limited: {dropped:,}; ring buffer full: {full:,}")
            if asl and app.name in asl:
                a = asl[app.name]
                parts.append(f"asl ({a['source']}): {a['delivered']:,} delivered, {a['errors']:,} errors, "
                             f"{a['emitted']:,} emitted, {a['dropped']:,} dropped (queue full)")
        params = ", ".join(f"{k}={v:,}" for k, v in snap["params"].items()) or "no params"
        state = "on" if snap["enabled"] else "off"
        title = f"[bold]{app.name}[/bold]  ({app.mode}, {state}; {params})"
        console.print(Panel(Group(*parts) if parts else "(no statistics)", title=title, title_align="left"))
    ct = Table(title="counters", title_justify="left")
    ct.add_column("counter")
    ct.add_column("value", justify="right")
    for name, v in counters.items():
        if v:
            ct.add_row(name, _fmt(v))
    console.print(ct)
