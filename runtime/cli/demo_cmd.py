"""``xdpmon demo``: the live demo (runtime/demo/), or without root the replay demo."""

from __future__ import annotations

import os
import sys

import click

from .run_cmd import _duration


def _seconds(ctx, param, value):
    ns = _duration(ctx, param, value)
    return None if ns is None else ns / 1e9


@click.command()
@click.option("--duration", default="60s", callback=_seconds, show_default=True, help="How long the demo sends.")
@click.option("--attack-at", default="10s", callback=_seconds, show_default=True, help="When the SYN flood starts.")
@click.option("--attack-for", default="20s", callback=_seconds, show_default=True, help="How long the flood lasts.")
@click.option("--rate", default="200k", show_default=True, help="The flood's SYNs per second (e.g. 50k, 1.5M).")
@click.option("--enforce", is_flag=True, help="Block the flood's sources (their prefix) and drop their frames.")
@click.option("--write-pcap", type=click.Path(dir_okay=False), help="Also write the traffic sent to this capture.")
@click.option("--seed", default=42, show_default=True, help="The benign traffic's seed.")
@click.option("--out", "out_dir", default="build", show_default=True, type=click.Path(file_okay=False),
              help="Where the timeline (demo-timeline.json) and the events (demo-events.jsonl) go.")
@click.option("--view", type=click.Choice(["auto", "rich", "plain"]), default="auto", show_default=True,
              help="rich: a live screen; plain: a line per second; auto: rich on a terminal.")
def demo(duration, attack_at, attack_for, rate, enforce, write_pcap, seed, out_dir, view):
    """Detect a SYN flood on demand, live: two network namespaces joined by a veth pair
    (198.18.0.0/15, no default route), every app of specs/ attached to the monitor side,
    benign traffic and a spoofed SYN flood sent from the other; then the timeline:
    detection latency, the victim found, false alarms, what --enforce dropped. It removes
    everything it made, also on Ctrl-C. Without root: the replay demo."""
    from runtime.demo.scenario import Scenario, ScenarioError, parse_rate

    try:
        sc = Scenario(duration_s=duration, attack_at_s=attack_at, attack_for_s=attack_for, rate_pps=parse_rate(rate),
                      enforce=enforce, seed=seed)
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    if os.geteuid() != 0:
        click.echo("xdpmon demo: the live demo makes network namespaces and attaches an XDP program, which "
                   "needs root (sudo make demo). Without root, here is the replay demo instead: the same "
                   "apps on a capture, through the reference engine.", err=True)
        sys.exit(_replay_demo())
    from runtime.demo.live import run_demo
    from runtime.demo.traffic import project_root

    from .main import compile_or_exit, load_or_exit

    try:
        root = project_root()
    except FileNotFoundError as e:
        click.echo(f"xdpmon demo: {e}", err=True)
        sys.exit(2)
    rich = view == "rich" or (view == "auto" and sys.stdout.isatty())
    out = os.path.abspath(out_dir)
    pcap = os.path.abspath(write_pcap) if write_pcap else None
    os.chdir(root)                                  # the specs name their ASL relative to the checkout
    specs = sorted(str(p.relative_to(root)) for p in (root / "specs").glob("*.mon"))
    click.echo(f"xdpmon demo: compiling {len(specs)} specs (live build)", err=True)
    program, sources = load_or_exit(specs)
    art = compile_or_exit(program, sources)
    status, tl = run_demo(sc, art, rich=rich, write_pcap=pcap, say=lambda m: click.echo(m, err=True),
                          build_dir=out)
    if tl is not None:
        _print_timeline(tl, out)
    sys.exit(status)


def _print_timeline(tl, out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="timeline (seconds from the start of the traffic)", title_justify="left")
    for col in ("", "at", ""):
        t.add_column(col)
    for what, at, note in tl.rows():
        t.add_row(what, at, note)
    Console().print(t)
    v = tl.verdicts()
    click.echo(f"detected: {'yes' if v['detected'] else 'NO'}; victim identified: "
               f"{'yes' if v['victim_identified'] else 'NO'}; latency <= 1 s: {'yes' if v['latency_ok'] else 'NO'}; "
               f"end reported within 2 s: {'yes' if v['end_reported_within_2s'] else 'NO'}; "
               f"false alarms: {v['false_alarms']}"
               + (f"; benign sources blocked: {v['benign_dropped']}" if tl.scenario.enforce else ""))
    click.echo(f"kept: {out}/demo-timeline.json, {out}/demo-events.jsonl")


def _replay_demo() -> int:
    """The replay demo (make demo without root): the demo capture through the reference engine."""
    import subprocess

    from runtime.demo.traffic import project_root

    root = project_root()
    pcap = root / "build" / "demo.pcap"
    if not pcap.exists():
        pcap.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "examples.traffic", "demo", str(pcap)], cwd=root, check=True)
    specs = sorted(str(p) for p in (root / "specs").glob("*.mon"))
    return subprocess.run([sys.executable, "-m", "runtime.cli", "replay", *specs, "--pcap", str(pcap), "--asl",
                           "--engine", "reference"], cwd=root).returncode
