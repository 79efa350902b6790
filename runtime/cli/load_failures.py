"""How the command line reports a program that did not load.

One line saying why (runtime/dataplane/load_errors.py reads it from BCC's log),
for a map the kernel refused what it holds and how big it is (from the
manifest), the generated C line a verifier rejection points at, the last lines
of the log, and "a bug in xdpmon's compiler" only where the generated program is
at fault. ``survive_fatal_exits`` makes LLVM ending the process while it
compiles (runtime/dataplane/fatal_exit.py) reported the same way.
"""

from __future__ import annotations

import click

LOG_TAIL = 12          # lines of BCC's log shown under a load failure
PREFIX = "xdpmon: cannot load the program"


def map_detail(manifest: dict | None, name: str | None) -> str | None:
    """What a map the kernel refused holds and how big it is, from the manifest."""
    m = next((m for m in (manifest or {}).get("maps", ()) if m["name"] == name), None)
    if m is None or "size" not in m:
        return None
    entry = m["key"]["size"] + m["value"]["size"]
    first = {}
    for u in m["uses"]:
        first.setdefault(f"{u['app']}.{u['stat']}", f"{u['file']}:{u['line']}")
    stats = ", ".join(f"{stat} ({where})" for stat, where in first.items())
    return (f"map {name} holds {stats}: {m['size']:,} entries x {entry:,} bytes (key and value) = "
            f"{m['size'] * entry / 2**30:,.1f} GiB; a smaller 'size' needs less")


def report(e, manifest: dict | None = None, prefix: str = PREFIX) -> None:
    """Print LoadError ``e`` to stderr."""
    click.echo(f"{prefix}: {e.reason}", err=True)
    detail = map_detail(manifest, e.map_name)
    if detail:
        click.echo(f"  {detail}", err=True)
    if e.c_line:
        click.echo(f"  generated C line {e.c_line}: {e.c_text}", err=True)
    lines = [ln for ln in e.log.strip().split("\n") if ln.strip()][-LOG_TAIL:]
    if lines:
        click.echo("  log (last lines):\n" + "\n".join("    " + ln for ln in lines), err=True)
    if e.bug:
        click.echo("this is a bug in xdpmon's compiler: please report it with the specs", err=True)


def survive_fatal_exits(manifest: dict, prefix: str = PREFIX) -> None:
    """LLVM may end the process while it compiles: report that like any load failure."""
    from runtime.dataplane import loader

    loader.survive_fatal_exits(lambda e: report(e, manifest, prefix))
