"""A fleet on one machine (examples/fleet/): four hosts, each a network namespace with its
own xdpmon instance on its own veth and traffic of its own, one of them under a SYN flood;
a site Prometheus scraping them (file service discovery, the alert rules of
examples/prometheus/) and a global Prometheus federating it. Everything is asked of the
global tier's HTTP API: exact fleet-wide sums, exact per-host counts, the SYN flood alert
for the attacked host only; and every query of the Grafana dashboard answers there."""

from __future__ import annotations

import os

import pytest

from prom_helpers import dashboard, dashboard_exprs, metric_names, rule_exprs, tool

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

HOSTS = 4


def test_a_fleet_seen_through_the_global_tier():
    tool("prometheus")                      # missing: the reason, as a failure (root can install it)
    from examples.fleet.fleet import Fleet
    from examples.fleet.traffic import VICTIM
    from runtime.traffic.veth import namespaces

    log: list[str] = []
    f = Fleet(HOSTS, say=log.append)
    tag, pids = None, []
    try:
        f.up()
        tag = f.net.tag
        pids = [p.pid for p in f.instances] + [f.site.proc.pid, f.globe.proc.pid]
        g = f.globe.api
        exprs = dashboard_exprs(dashboard(), rate_interval="10s")
        during = {}

        def firing() -> bool:
            """Once the global tier has the alert firing: the dashboard's queries and the site's
            alerts, asked while the flood still goes on (then it stops)."""
            if not g.query('ALERTS{alertname="XdpmonSynFlood", alertstate="firing"}'):
                return False
            during["dashboard"] = {k: g.query(e) for k, e in exprs.items()}
            during["site_alerts"] = f.site.api.get("/api/v1/alerts")["data"]["alerts"]
            return True

        sent = f.send(15, flood_host=0, flood_rate=3000, stop_flood=firing)
        assert during, f"the SYN flood alert did not fire at the global tier within the flood's 40 s: {log}"
        assert sent.flood["stopped"] and sent.flood["sent"] > 3000 * 5
        hosts = [h.name for h in f.hosts]

        # per host: every frame sent counted once by that host's instance, and nothing else
        got = f.settled(sent)
        assert got == {h: float(n) for h, n in sent.frames.items()}
        assert g.values("sum by (host) (xdpmon_frames_total)", "host") == got
        # fleet-wide sums: SYNs towards the victim from all hosts, and all frames
        assert all(sent.syns_to_victim[h] > 0 for h in hosts)        # every host sent some
        syns = f'xdpmon_tcp_syns_per_dst_syns_total{{ip_dst="{VICTIM}"}}'
        assert g.scalar(f"sum({syns})") == sum(sent.syns_to_victim.values())
        assert g.values(f"sum by (host) ({syns})", "host") == {h: float(n) for h, n in sent.syns_to_victim.items()}
        assert g.scalar("sum(xdpmon_frames_total)") == sum(sent.frames.values())
        assert g.scalar('count(count by (host) (xdpmon_build_info{site="lab"}))') == HOSTS   # the site's label

        # the alert: for the attacked host and the victim only, and no other alert at all
        fired = g.query('max_over_time(ALERTS{alertstate="firing"}[10m])')
        assert {(r["metric"]["alertname"], r["metric"]["host"], r["metric"]["ip_dst"]) for r in fired} == \
            {("XdpmonSynFlood", "host0", VICTIM)}
        at_site = [(a["labels"]["alertname"], a["labels"]["host"], a["labels"]["ip_dst"])
                   for a in during["site_alerts"] if a["state"] == "firing"]
        assert at_site == [("XdpmonSynFlood", "host0", VICTIM)]
        # the on-demand detector ran there only (flow_watch enabled it)
        assert g.values('max_over_time(xdpmon_app_enabled{app="syn_flood"}[10m])', "host") == \
            {h: (1.0 if h == "host0" else 0.0) for h in hosts}

        # the rules and the dashboard read metrics a real scrape has, and the dashboard's
        # every query answered with data while the flood went on
        names = g.names()
        used = set().union(*(metric_names(e) for e in [*rule_exprs().values(), *exprs.values()]))
        assert used - names == set()
        assert [k for k, v in during["dashboard"].items() if not v] == []
    finally:
        problems = f.close()
    assert problems == [], problems
    assert [ns for ns in namespaces() if tag and ns.startswith(tag)] == []
    assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []
