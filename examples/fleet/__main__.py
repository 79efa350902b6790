"""python -m examples.fleet [--hosts N] [--seconds S] [--flood-rate R] [--keep]: the fleet demo
(``make fleet-demo``; root).

Builds the fleet (fleet.py), sends every host's traffic and a SYN flood on host0 until the
global tier has the SYN flood alert firing, then asks the global tier a few questions
and shows its answers next to what was sent: the SYNs towards the victim across the
fleet, each host's frames, the firing alerts, where the on-demand detector ran. With
``--keep`` it then stays up (the URLs and commands to try are shown) until Ctrl-C. It
tears everything down at the end, on Ctrl-C and on any error. Exit status: 0 when every
answer equals what was sent, 1 when one does not or the fleet failed (the reason is
shown), 2 for what to fix first (not root, no Prometheus), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .fleet import Fleet
from .procs import ProcError
from .tiers import ApiError, PrometheusMissing
from .traffic import VICTIM

QUERIES = {
    "syns": f'sum(xdpmon_tcp_syns_per_dst_syns_total{{ip_dst="{VICTIM}"}})',
    "frames": "sum by (host) (xdpmon_interface_frames_total)",
    "alerts": 'max_over_time(ALERTS{alertstate="firing"}[10m])',
    "detector": 'max_over_time(xdpmon_app_enabled{app="syn_flood"}[10m])',
}


def _terminate(*_):
    raise KeyboardInterrupt


def report(f: Fleet, sent) -> bool:
    """The global tier's answers beside what was sent; whether they all agree."""
    g, ok = f.globe.api, True
    counted = f.settled(sent)
    print(f"\nthe global tier ({f.globe.url}), asked:\n")
    syns = g.scalar(QUERIES["syns"])
    want = sum(sent.syns_to_victim.values())
    ok &= syns == want
    print(f"  {QUERIES['syns']}\n    = {syns or 0:,.0f}   (sent: {want:,}: "
          + ", ".join(f"{h} {n:,}" for h, n in sent.syns_to_victim.items()) + ")")
    print(f"\n  {QUERIES['frames']}")
    for h, n in sent.frames.items():
        same = counted.get(h) == n
        ok &= same
        print(f"    {h}: {counted.get(h, 0):,.0f}   (sent: {n:,}{'' if same else '  DIFFERENT'})")
    print(f"\n  {QUERIES['alerts']}")
    fired = g.query(QUERIES["alerts"])
    for r in fired:
        m = r["metric"]
        print(f"    {m['alertname']} on {m.get('host')} ({m.get('instance')})"
              + (f" towards {m['ip_dst']}" if "ip_dst" in m else "") + f" [{m.get('severity')}]")
    if not fired:
        print("    (none)")
    print(f"\n  {QUERIES['detector']}")
    for h, v in sorted(g.values(QUERIES["detector"], "host").items()):
        print(f"    {h}: {'ran' if v else 'off'}")
    return ok


def show_urls(f: Fleet, keep: bool) -> None:
    ns, h0 = f.net.monitor_ns, f.hosts[0]
    print(f"\n{'while it runs' if keep else 'with --keep, while it runs'} (Prometheus listens in the namespace "
          f"{ns} only):\n"
          f"  ip netns exec {ns} curl -s '{f.globe.url}/api/v1/query' --data-urlencode 'query={QUERIES['syns']}'\n"
          f"  ip netns exec {ns} curl -s {f.site.url}/api/v1/alerts\n"
          f"  ip netns exec {ns} curl -s '{f.site.url}/federate?match[]=xdpmon_frames_total'\n"
          f"  ip netns exec {h0.ns} curl -s http://{h0.mgmt_addr}:9400/metrics\n"
          f"  XDPMON_RUN_DIR={f.tmp / h0.name / 'run'} .venv/bin/xdpmon ctl --name {h0.name} status\n"
          f"  the configs: {f.tmp}/prometheus-site.yml, prometheus-global.yml, targets/, {h0.name}/xdpmon.yaml")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.fleet", description=__doc__.split("\n\n")[1])
    ap.add_argument("--hosts", type=int, default=4, help="hosts in the fleet (default 4)")
    ap.add_argument("--seconds", type=float, default=15, help="seconds of benign traffic per host (default 15)")
    ap.add_argument("--flood-rate", type=float, default=3000, help="the SYN flood's frames per second (default 3000)")
    ap.add_argument("--keep", action="store_true", help="stay up after the report until Ctrl-C")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("fleet: needs root (namespaces, XDP): sudo make fleet-demo", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)    # also where it was started ignoring SIGINT
    f = Fleet(a.hosts, say=print)
    status = 0
    try:
        f.up()
        g = f.globe.api
        sent = f.send(a.seconds, flood_rate=a.flood_rate, stop_flood=lambda: bool(g.query(
            'ALERTS{alertname="XdpmonSynFlood", alertstate="firing"}')))
        if not report(f, sent):
            print("\nfleet: an answer differs from what was sent (above)")
            status = 1
        show_urls(f, a.keep)
        if a.keep:
            print("\nfleet: up until Ctrl-C")
            signal.pause()
    except KeyboardInterrupt:
        print("\nfleet: interrupted")
        status = 130
    except PrometheusMissing as e:
        print(f"fleet: {e}", file=sys.stderr)
        status = 2
    except (ProcError, ApiError, TimeoutError, OSError) as e:
        print(f"fleet: stopped: {e}", file=sys.stderr)
        status = 1
    except Exception as e:            # a sender's failure, or a bug: said, and everything torn down
        print(f"fleet: stopped: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        problems = f.close()
        for p in problems:
            print(f"fleet: while tearing down: {p}", file=sys.stderr)
        print("fleet: torn down: " + ("instances detached and stopped, both Prometheus stopped, namespaces and "
                                      "temporary files removed" if not problems else "with the problems above"))
    return status or (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
