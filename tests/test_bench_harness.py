"""The per-packet benchmark harness (benchmarks/perf/): the frames it measures
are the frames the programs see, on every repeat.

BPF_PROG_TEST_RUN keeps a run's packet changes for the next repeat. These tests
run every benchmark frame through the live build of the nine specs/ merged with
repeat R and assert the exact counter values R repeats of that frame give; they
show the new-flow wrapper gives R distinct sources; and they show that the
harness's check catches the old approach of benchmarks/bench_merge.py (the replay
build, whose header strip persists between repeats).
"""

from __future__ import annotations

import ipaddress

import pytest

from benchmarks.perf import checks as K
from benchmarks.perf import configs as C
from benchmarks.perf import frames as F
from benchmarks.perf import runner as Rn
from benchmarks.perf import scaling as S
from benchmarks.perf import stats

R = 50
FRAMES = F.benchmark_frames()


@pytest.fixture(scope="module")
def merged(kernel):
    t = Rn.prepare("merged", C.XdpmonProgram("merged", C.spec_paths(C.all_spec_names())))
    yield t
    t.close()


# ---- frames, without the kernel ---------------------------------------------------------------

def test_frame_addresses_are_benchmarking_ranges():
    from scapy.all import Ether, IP, IPv6
    v4, v6 = ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48")
    for f in FRAMES + [F.BenchFrame("c", d, "", None) for d in F.capture_sample(100)]:
        pkt = Ether(f.data)
        for layer, net in ((IP, v4), (IPv6, v6)):
            if layer in pkt:
                assert ipaddress.ip_address(pkt[layer].src) in net, f.name
                assert ipaddress.ip_address(pkt[layer].dst) in net, f.name
    assert ipaddress.ip_address(F.SYN_LAST) in v4


def test_frame_names_and_declared_outcomes():
    assert [f.name for f in FRAMES] == [
        "tcp_syn_new_flow", "tcp_synack", "tcp_established", "dns_query", "dns_response", "udp_other",
        "ipv6_tcp", "vlan_tcp", "qinq_tcp", "ipv4_options", "ipv4_fragment", "truncated_tcp"]
    # what the reference decoder says, for every layer (the nine specs parse them all)
    from runtime.engines.reference.decoder import decode
    assert {f.name: "parse." + decode(f.data).outcome for f in FRAMES} == {f.name: f.outcome for f in FRAMES}
    assert [f.outcome for f in FRAMES].count("parse.ok") == 10
    with pytest.raises(KeyError, match="no benchmark frame 'nope'"):
        F.by_name("nope")


def test_new_flow_sources_stay_in_their_range():
    assert F.source_after(F.SYN_BASE, 5) == "198.19.128.5"
    with pytest.raises(ValueError, match="past 198.19.255.255"):
        Rn.syn_frame(FRAMES[0], 40, 1000)


def test_quartiles_and_paired_differences():
    assert stats.quartiles([1, 2, 3, 4, 5]) == (2, 3, 4)
    assert stats.summary([10, 20, 30, 40, 50]) == {"median": 30, "q1": 20, "q3": 40, "n": 5}
    assert stats.paired([5, 7], [1, 2]) == [4, 5]
    assert stats.summed([[1, 2], [10, 20]]) == [11, 22]
    assert stats.ratios([2, 3], [4, 0]) == []                      # half the rounds: refused
    assert stats.ratios([2, 3, 4, 9], [4, 6, -8, 3]) == [0.5, 0.5, 3.0]    # one round of four left out
    with pytest.raises(ValueError, match="different lengths"):
        stats.paired([1], [1, 2])


def test_scaling_overlap_shapes():
    assert S.spec("shared", 3).count("select tcp }") == 3
    assert S.alone_sample("half", 2) == "shared" and S.alone_sample("half", 11) == "disjoint3"
    assert S.separate_names("disjoint", 9)[-1] == "alone:disjoint0"
    with pytest.raises(ValueError, match="1 to 64"):
        S.spec("shared", 65)
    with pytest.raises(ValueError, match="unknown overlap"):
        S.app_text("some", 1)


def test_external_configuration_missing_is_reported():
    C.EXTERNAL["nothing_here"] = "benchmarks.no_such_configuration:load"
    try:
        obj, why = C.load_external("nothing_here")
    finally:
        del C.EXTERNAL["nothing_here"]
    assert obj is None and why == "not present (benchmarks.no_such_configuration not found)"


# ---- on the kernel ----------------------------------------------------------------------------

@pytest.mark.parametrize("frame", FRAMES, ids=[f.name for f in FRAMES])
def test_every_frame_is_parsed_the_same_on_every_repeat(merged, frame):
    """Exact counter values after R repeats: the frame seen on repeat R is the frame meant."""
    prog = merged.prog
    before = prog.counters()
    acc_before = K.per_dst_total(prog.stat("traffic_accounting", "per_dst"), frame.dst)
    ns = Rn.run_checked(merged, frame, R, run_index=1)         # raises FrameCheckError otherwise
    after = prog.counters()
    delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert delta == {"frames": R, frame.outcome: R, "verdict.pass": R}
    packets, nbytes = K.per_dst_total(prog.stat("traffic_accounting", "per_dst"), frame.dst)
    assert (packets - acc_before[0], nbytes - acc_before[1]) == (R, R * frame.length)
    assert ns > 0


def test_new_flow_wrapper_gives_every_repeat_a_new_source(merged):
    prog = merged.prog
    Rn.run_checked(merged, FRAMES[0], R, run_index=3)            # sources base + 3R + 1 .. base + 4R
    want = {F.source_after(F.SYN_BASE, 3 * R + i) for i in range(1, R + 1)}
    ports = {e["key"]["ip.src"]: e["value"]["distinct"] for e in prog.stat("port_scan", "ports")}
    assert want <= set(ports) and all(ports[s] == 1 for s in want)
    pending = prog.stat("half_open_tcp", "pending")
    opened = {e["key"]["ip.src"] for e in pending["open"]} if isinstance(pending, dict) else set()
    assert want <= opened
    assert F.source_after(F.SYN_BASE, 4 * R + 1) not in ports     # and no further


def test_capture_sample_counters_add_up(merged):
    capture = F.capture_sample(120)
    before = merged.prog.counters()["frames"]
    mean = Rn.run_capture(merged, capture)                       # raises FrameCheckError otherwise
    assert merged.prog.counters()["frames"] - before == 120 and mean > 0


class _ReplayProgram:
    """The replay build of specs/ loaded as the old bench_merge.py loaded it."""

    def __init__(self):
        from compiler.driver import compile_files
        from runtime.abi.manifest import Manifest
        from runtime.dataplane.loader import load
        from runtime.dataplane.maps import ProgramMaps
        art = compile_files([str(p) for p in C.spec_paths(C.all_spec_names())], replay=True)
        self.manifest = Manifest.of(art.manifest)
        self.loaded = load(art.c, stages=art.manifest.get("stages"))
        self.maps = ProgramMaps(self.loaded.bpf, self.manifest)
        self.maps.init()
        self.apps = [a.name for a in self.manifest.apps]
        self.fd = self.loaded.fd

    def counters(self):
        return dict(zip(self.manifest.counter_names, self.maps.counters()))

    def stat(self, app, stat):
        return self.maps.app_snapshot(app, 1 << 40, [stat])["stats"][stat]

    def close(self):
        self.loaded.close()


def test_the_old_approach_is_caught(kernel):
    """The replay build with repeat > 1: the header strip persists, repeat 2 on
    parses a shorter frame, and the same check fails loudly; with repeat 1 it passes."""
    from compiler.abi import REPLAY_HEADER_PACK
    from runtime.dataplane.bpf_test_run import TestRunner
    prog = _ReplayProgram()
    try:
        chk = K.RunCheck("replay build", prog)
        frame = F.by_name("tcp_established")
        data = REPLAY_HEADER_PACK.pack(1 << 40, frame.length) + frame.data
        runner = TestRunner(prog.fd, want_data_out=False)
        before = chk.probe(dst=frame.dst)
        r = runner.run(data, 1)
        chk.verify(before, chk.probe(dst=frame.dst), frame.data, 1, r.retval, frame_name=frame.name, dst=frame.dst)
        before = chk.probe(dst=frame.dst)
        r = runner.run(data, 5)
        after = chk.probe(dst=frame.dst)
        with pytest.raises(K.FrameCheckError, match="did not see this frame on every repeat") as e:
            chk.verify(before, after, frame.data, 5, r.retval, frame_name=frame.name, dst=frame.dst)
        assert "counter parse.ok grew by 1, expected 5" in str(e.value)
        assert after.counters["frames"] - before.counters["frames"] == 5
    finally:
        prog.close()


@pytest.mark.slow
def test_merged_and_separate_compute_the_same_statistics(kernel):
    from benchmarks.perf import equivalence as E
    confs = C.merge_configurations()
    names = ["merged", "reference4", "alone:traffic_accounting", "alone:dns_flows", "alone:half_open_tcp"]
    targets = {n: Rn.prepare(n, confs[n]()) for n in names}
    try:
        res = E.compare(targets, [("traffic_accounting", "merged", "alone:traffic_accounting"),
                                  ("dns_flows", "merged", "alone:dns_flows"),
                                  ("half_open_tcp", "merged", "alone:half_open_tcp"),
                                  ("flow_watch", "merged", "reference4")],
                        FRAMES, F.capture_sample(50), repeat=5)
    finally:
        for t in targets.values():
            t.close()
    assert res["crossed_window"] is False
    assert [p["differences"] for p in res["pairs"]] == [[], [], [], []]
    assert res["same"] is True
