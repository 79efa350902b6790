"""The multi-program deployment of the four apps (benchmarks/dispatcher/: an entry
program tail-calling xdpmon's own program of each app, compiled alone) computes what the
merged program computes, and every program of the chain runs on every frame.

The frames and scenarios are those of tests/test_handwritten.py: the benchmark's
configuration (syn_flood on), and one where flow_watch's program enables syn_flood in
syn_flood's program (their shared control block) and the flood passes the rate limit.
"""

from __future__ import annotations

import pytest
from four_apps_helpers import check_limited_sends, entry, in_one_window, rules_on, strip_action

pytestmark = pytest.mark.kernel

APPS = ("traffic_accounting", "syn_flood", "flow_watch", "dns_flows")


@pytest.fixture
def programs(kernel):
    from benchmarks.dispatcher.loader import DispatcherApps
    from benchmarks.four_apps import GeneratedApps

    made = []

    def make(syn_enabled: bool):
        g = GeneratedApps(syn_enabled=syn_enabled)
        made.append(g)
        d = DispatcherApps(syn_enabled=syn_enabled)
        made.append(d)
        return g, d
    yield make
    for p in made:
        p.close()


def test_same_statistics_as_merged_and_every_program_ran(programs):
    from benchmarks.four_app_frames import mixed_frames
    from benchmarks.four_apps import without_times

    frames = mixed_frames()
    (gen, disp), now, _ = in_one_window(lambda: programs(syn_enabled=True), frames)
    assert without_times(disp.snapshot_apps(now)) == without_times(gen.snapshot_apps(now))
    assert strip_action(disp.events()) == strip_action(gen.events())

    total = sum(n for _, _, n in frames)
    c = disp.counters()
    assert total == 1282
    assert c["entry.frames"] == total and c["entry.entry_tail_call_failed"] == 0
    assert c["entry.app_tail_call_failed"] == 0
    assert (c["entry.ipv4"], c["entry.ipv6"], c["entry.other"]) == (1275, 5, 2)  # ARP and three tags: other
    for app in APPS:                            # each app's own program ran on every frame
        assert c[f"{app}.frames"] == c[f"{app}.verdict.pass"] == total, app
    assert c["syn_flood.rule.syn_flood.r0.fired"] == gen.counters()["rule.syn_flood.r0.fired"] == 213


def test_flow_watch_enables_syn_flood_across_programs(programs):
    from benchmarks.four_app_frames import VICTIM, mixed_frames
    from benchmarks.four_apps import without_times

    (gen, disp), now, info = in_one_window(lambda: rules_on(programs(syn_enabled=False)), mixed_frames())
    d = disp.snapshot_apps(now)
    assert without_times(d) == without_times(gen.snapshot_apps(now))
    assert d["syn_flood"]["enabled"] is True     # flow_watch's program wrote syn_flood's control block
    victim = entry(d["syn_flood"]["stats"]["syns"], **{"ip.dst": VICTIM})["value"]["count"]
    assert 1200 <= victim < 1213
    ev_d, ev_g = strip_action(disp.events()), strip_action(gen.events())
    assert ev_d[0] == ev_g[0] == {"app": "flow_watch", "rule": 0, "type": "enable", "enabled": "syn_flood"}
    c = disp.counters()
    assert c["flow_watch.app.flow_watch.events"] == 1
    sent_d = check_limited_sends(ev_d, c["syn_flood.app.syn_flood.rate_limited"], victim - 100, info["flood_wall_ns"])
    sent_g = check_limited_sends(ev_g, gen.counters()["app.syn_flood.rate_limited"], victim - 100,
                                 info["flood_wall_ns"])
    assert sent_d[:1000] == sent_g[:1000]
    assert c["syn_flood.app.syn_flood.events"] == len(sent_d)


def test_a_changed_generated_program_is_refused_clearly():
    from benchmarks.dispatcher.wrap import chain_link, share_control

    with pytest.raises(ValueError, match="has 0 definitions of the entry function xdpmon_main, not 1"):
        chain_link("int other(struct xdp_md *ctx)\n{ return 2; }\n", "c", "s", 1)
    with pytest.raises(ValueError, match="declares no control block"):
        share_control("BPF_ARRAY(xm_params, struct xm_params, 1);\n", "xm_ctl", "x", owner=True)
