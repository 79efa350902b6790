"""The hand-written program of the four reference apps (benchmarks/handwritten/) computes
what xdpmon's merged program computes: the same frames through both, in the kernel, give
equal snapshots (but for times: dns_flows' first and last are each run's own clock),
equal events and equal counts of what was rate-limited.

Both scenarios run the mixed frames of benchmarks/four_app_frames.py inside one 1 s
window, the two programs side by side frame by frame, and read both snapshots at one
clock: the benchmark's configuration (syn_flood on, the specs' params), and one where
the rules act (syn_flood off until flow_watch's rule enables it at a flow threshold of
20; per_dst 100, so the SYN flood's rule fires past the 1000/s limit). Where a limit of
1000/s cuts a burst depends on how long the burst takes, so the sends of that flood are
compared as their first 1,000 and the counts bounded by each run's own time.
"""

from __future__ import annotations

import pytest
from four_apps_helpers import check_limited_sends, entry as _entry, in_one_window, paired_programs, rules_on, strip_action

pytestmark = pytest.mark.kernel


@pytest.fixture
def programs(kernel):
    from benchmarks.handwritten.loader import HandwrittenApps
    yield from paired_programs(HandwrittenApps)


def test_same_statistics_as_merged_syn_flood_on(programs):
    from benchmarks.four_app_frames import VICTIM, mixed_frames
    from benchmarks.four_apps import without_times

    frames = mixed_frames()
    (gen, hw), now, _ = in_one_window(lambda: programs(syn_enabled=True), frames)
    g, h = gen.snapshot_apps(now), hw.snapshot_apps(now)
    assert without_times(h) == without_times(g)

    # what the frames make of it, exactly
    per_dst = h["traffic_accounting"]["stats"]["per_dst"]
    assert _entry(per_dst, **{"ip.dst": VICTIM})["value"] == {"packets": 13 + 1200 + 5, "bytes": 13 * 54 + 1200 * 54
                                                              + 5 * 254}
    assert _entry(per_dst, **{"ip.dst": "198.19.0.20"})["value"]["packets"] == 3 + 1   # other udp, 4000-byte udp
    # the 4,000-byte frame: a single-buffer program (both are) counts the linear part a test
    # run gives it (an interface gives such a program no longer frame)
    from runtime.dataplane.bpf_test_run import XDP_TEST_RUN_LINEAR
    assert _entry(per_dst, **{"ip.dst": "198.19.0.20"})["value"]["bytes"] == 3 * 72 + XDP_TEST_RUN_LINEAR
    assert len(per_dst) == 10     # every IP destination (ARP and the triple-tagged frame are not IP)
    syns = h["syn_flood"]["stats"]["syns"]
    assert _entry(syns, **{"ip.dst": VICTIM}) == {"key": {"ip.dst": VICTIM}, "value": {"count": 13 + 1200},
                                                  "last_window": {"count": 0}}
    assert {e["key"]["ip.dst"]: e["value"]["count"] for e in syns} == {
        "198.19.0.1": 14 + 2, "198.19.0.2": 13 + 1, VICTIM: 1213, "2001:2::80": 2}
    assert h["dns_flows"]["stats"]["rcodes"] == [{"key": {"dns.rcode": r}, "value": {"count": n}}
                                                 for r, n in ((0, 3), (2, 1), (3, 2), (5, 1))]
    flows = h["dns_flows"]["stats"]["flows"]
    q = _entry(flows, **{"ip.src": "198.18.2.1", "ip.dst": "198.19.0.53", "udp.sport": 5353, "udp.dport": 53})
    assert q["value"]["count"] == 4 and q["value"]["first"] <= q["value"]["last"]   # (one tick of the coarse clock may hold them all)
    assert _entry(flows, **{"ip.src": "198.19.0.53", "ip.dst": "198.18.2.1", "udp.sport": 53,
                            "udp.dport": 5353})["value"]["count"] == 7
    assert len(flows) == 6        # 2 queries, the responses, the cut one, IPv6, QinQ: every UDP/53 flow
    distinct = h["flow_watch"]["stats"]["flows"]["value"]["distinct"]
    assert distinct == g["flow_watch"]["stats"]["flows"]["value"]["distinct"] == 55     # the 55 L4 flows, exactly

    # syn_flood's rule fired on VICTIM's 1001st to 1213th SYN, all within the limit
    ev_h, ev_g = hw.events(), gen.events()
    assert strip_action(ev_h) == strip_action(ev_g)
    assert len(ev_h) == 213
    assert ev_h[0]["fields"] == {"ip.src": "198.18.9.9", "ip.dst": VICTIM, "tcp.dport": 80}
    c = gen.counters()
    assert hw.counters()["app.syn_flood.rate_limited"] == c["app.syn_flood.rate_limited"] == 0


def test_rules_act_as_in_merged(programs):
    """flow_watch enables syn_flood once the flow estimate passes 20; the flood on VICTIM
    then fires syn_flood's rule past its limit of 1000/s. Where the limit cuts depends on
    each run's timing (four_apps_helpers.check_limited_sends): the sends are compared as
    the first 1,000 and the counts of each program checked against its own run."""
    from benchmarks.four_app_frames import VICTIM, mixed_frames
    from benchmarks.four_apps import without_times

    (gen, hw), now, info = in_one_window(lambda: rules_on(programs(syn_enabled=False)), mixed_frames())
    g, h = gen.snapshot_apps(now), hw.snapshot_apps(now)
    assert without_times(h) == without_times(g)
    assert h["syn_flood"]["enabled"] is True
    assert h["flow_watch"]["params"] == {"flow_threshold": 20} and h["syn_flood"]["params"] == {"per_dst": 100}
    victim = _entry(h["syn_flood"]["stats"]["syns"], **{"ip.dst": VICTIM})["value"]["count"]
    assert 1200 <= victim < 1213                  # the flood, and the early SYNs after the enable

    ev_h, ev_g = strip_action(hw.events()), strip_action(gen.events())
    assert ev_h[0] == ev_g[0] == {"app": "flow_watch", "rule": 0, "type": "enable", "enabled": "syn_flood"}
    assert [e["type"] for e in ev_h].count("enable") == [e["type"] for e in ev_g].count("enable") == 1
    sent_h = check_limited_sends(ev_h, hw.counters()["app.syn_flood.rate_limited"], victim - 100,
                                 info["flood_wall_ns"])
    sent_g = check_limited_sends(ev_g, gen.counters()["app.syn_flood.rate_limited"], victim - 100,
                                 info["flood_wall_ns"])
    assert sent_h[:1000] == sent_g[:1000] == [{"app": "syn_flood", "rule": 0, "type": "packet", "fields": {
        "ip.src": "198.18.9.9", "ip.dst": VICTIM, "tcp.dport": 80}}] * 1000
    assert hw.counters()["app.syn_flood.ringbuf_full"] == 0


def test_param_and_app_names_are_checked(programs):
    _, hw = programs(syn_enabled=True)
    with pytest.raises(KeyError, match="no param syn_flood.nope"):
        hw.set_param("syn_flood", "nope", 1)
    with pytest.raises(KeyError, match="always on"):
        hw.set_enabled("flow_watch", 1)


UNWINDOWED = {"traffic_accounting": ("per_dst",), "dns_flows": ("flows", "rcodes")}


def _unwindowed(apps: dict) -> dict:
    return {app: {st: apps[app]["stats"][st] for st in stats} for app, stats in UNWINDOWED.items()}


@pytest.mark.slow
def test_same_statistics_on_the_parser_tests_frames(programs):
    """The parser's hard cases, frame by frame: the crafted frames of
    tests/test_parse_kernel.py, every truncation of nine of them, 3,000 seeded mutations
    and every frame of the tcpdump corpus (about 11,700 frames, syn_flood on), in chunks
    of 500 run side by side. After each chunk the snapshots are equal; a chunk that ends
    in another window than it began in is compared on its unwindowed statistics, and the
    next one starts two windows later (the windows a snapshot shows then hold no frame
    that was counted on either side of a window's end)."""
    import itertools

    import test_parse_kernel as parse_tests
    from benchmarks.four_app_frames import WINDOW_NS, wait_for_window_start
    from benchmarks.four_apps import kernel_clock_ns, without_times
    from runtime.dataplane.bpf_test_run import TestRunner

    parse_tests._corpus_or_skip()
    crafted = parse_tests.crafted_frames()
    frames = itertools.chain(crafted.values(), (f for _, f in parse_tests.truncations(crafted)),
                             (f for _, f in parse_tests.mutations(crafted)), (f for _, f in parse_tests.corpus_frames()))
    gen, hw = programs(syn_enabled=True)
    runners = [TestRunner(p.fd, want_data_out=False) for p in (gen, hw)]
    full = partial = ran = 0
    while chunk := list(itertools.islice(frames, 500)):
        if kernel_clock_ns() % WINDOW_NS > WINDOW_NS // 2:
            wait_for_window_start()
        window = kernel_clock_ns() // WINDOW_NS
        for f in chunk:
            verdicts = [r.run(f).retval for r in runners]
            assert verdicts[0] == verdicts[1] and verdicts[0] in (2, None), verdicts
            ran += verdicts[0] is not None
        now = kernel_clock_ns()
        g, h = gen.snapshot_apps(now), hw.snapshot_apps(now)
        if now // WINDOW_NS == window:
            assert without_times(h) == without_times(g)
            full += 1
        else:
            assert without_times(_unwindowed(h)) == without_times(_unwindowed(g))
            partial += 1
            wait_for_window_start()
            wait_for_window_start()
    assert ran > 11_000 and full >= partial
    assert hw.events() == [] == gen.events()          # per_dst 1000: no destination had that many SYNs
