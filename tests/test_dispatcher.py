"""The multi-program deployment of the four apps (benchmarks/dispatcher/: an entry
program tail-calling xdpmon's own program of each app, compiled alone) computes what the
merged program computes, and every program of the chain runs on every frame.

The frames and scenarios are those of tests/test_handwritten.py: the benchmark's
configuration (syn_flood on), and one where flow_watch's program enables syn_flood in
syn_flood's program (their shared control block) and the flood passes the rate limit.
"""

from __future__ import annotations

import pytest
from four_apps_helpers import check_limited_sends, entry, in_one_window, paired_programs, rules_on, strip_action

pytestmark = pytest.mark.kernel

APPS = ("traffic_accounting", "syn_flood", "flow_watch", "dns_flows")


@pytest.fixture
def programs(kernel):
    from benchmarks.dispatcher.loader import DispatcherApps
    yield from paired_programs(DispatcherApps)


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
    enable = {"app": "flow_watch", "rule": 0, "type": "enable", "enabled": "syn_flood"}
    assert ev_g[0] == enable                      # one program: the enable comes before what it enabled
    # across programs the events are merged by time, and the coarse clock gives the enable
    # and syn_flood's first sends the same tick: only that there is one enable is checked
    assert [e for e in ev_d if e["app"] == "flow_watch"] == [enable]
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


def test_chain_link_wraps_the_generated_entry():
    from benchmarks.dispatcher.wrap import chain_link, share_control

    c = "BPF_ARRAY(xm_ctl, struct xm_ctl, 1);\nint xdpmon_main(struct xdp_md *ctx)\n{ xm_ctl.lookup(&k); return 2; }\n"
    out = chain_link(c, "xd_chain_x", "xd_shared_x", 2)
    assert "static __always_inline int xd_app_main(struct xdp_md *ctx)\n{ xm_ctl" in out
    assert out.count("int xdpmon_main(struct xdp_md *ctx)") == 1       # the new entry point only
    assert "xd_chain_x.call(ctx, 2);" in out and 'BPF_TABLE("extern", int, int, xd_chain_x, 8);' in out
    assert ".call(" not in chain_link(c, "xd_chain_x", "xd_shared_x", None)     # the last link
    shared = share_control(out, "xm_ctl", "xd_ctl_x", owner=True)
    assert 'BPF_TABLE_PUBLIC("array", int, struct xm_ctl, xd_ctl_x, 1);' in shared
    assert "xd_ctl_x.lookup(&k)" in shared and "xm_ctl.lookup" not in shared
    assert 'BPF_TABLE("extern", int, struct xm_ctl, xd_ctl_x, 1);' in share_control(out, "xm_ctl", "xd_ctl_x",
                                                                                   owner=False)


def test_two_dispatchers_in_one_process_share_nothing(kernel):
    """Their public tables have names of their own: frames run through one are not
    counted by the other, and closing one leaves the other working."""
    from benchmarks.dispatcher.loader import DispatcherApps
    from benchmarks.four_app_frames import syn
    from runtime.dataplane.bpf_test_run import TestRunner

    a = DispatcherApps()
    try:
        b = DispatcherApps()
        try:
            assert a.chain != b.chain and a.ctl != b.ctl
            assert TestRunner(a.fd).run(syn("198.18.0.1", "198.19.0.1")).retval == 2
            assert a.counters()["entry.frames"] == a.counters()["dns_flows.frames"] == 1
            assert b.counters()["entry.frames"] == b.counters()["traffic_accounting.frames"] == 0
        finally:
            b.close()
        assert TestRunner(a.fd).run(syn("198.18.0.1", "198.19.0.1")).retval == 2
        c = a.counters()
        assert c["entry.frames"] == c["dns_flows.frames"] == 2 and c["entry.app_tail_call_failed"] == 0
        syns = a.snapshot_apps()["syn_flood"]["stats"]["syns"]
        assert [e["value"]["count"] + e["last_window"]["count"] for e in syns] == [2]
    finally:
        a.close()
