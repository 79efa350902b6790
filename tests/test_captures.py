"""Captures read exactly: every interface's link type and timestamp resolution,
several sections in either byte order, nanoseconds as integers end to end,
frames cut at the snap length counted at their wire length, Linux cooked frames
replayed as Ethernet, oversize frames refused for their own reason, and time
going backwards changing nothing of one app when others are merged with it.

The captures are tests/captures/*.pcap*, written by tests/captures/make_captures.py
(the first test checks that they are what it writes). The replay tests run on
both engines with the same expected values.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.driver import compile_files
from engine_helpers import stat
from runtime.capture.pcap import CaptureError, read_frames
from runtime.engines import open_engine
from runtime.engines.replay import replay_captures

ROOT = Path(__file__).resolve().parent.parent
CAPS = ROOT / "tests" / "captures"
SPECS = ROOT / "specs"

_spec = importlib.util.spec_from_file_location("make_captures", CAPS / "make_captures.py")
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)

S = mc.S
T0 = mc.T0_NS


def cap(name: str) -> str:
    return str(CAPS / name)


def frames(name: str):
    warnings = []
    out = [(f.ts_ns, len(f.data), f.wire_len, f.refused) for f in read_frames(cap(name), warn=warnings.append)]
    return out, warnings


def test_checked_in_captures_are_what_the_generator_writes():
    made = mc.build_all()
    assert sorted(p.name for p in CAPS.iterdir() if p.suffix in (".pcap", ".pcapng")) == sorted(made)
    for name, data in made.items():
        assert (CAPS / name).read_bytes() == data, f"{name} differs: run python tests/captures/make_captures.py"


# ---- the reader ------------------------------------------------------------------------------

def test_every_interface_has_its_own_resolution_and_link_type():
    got, warnings = frames("interfaces.pcapng")
    assert got == [
        (T0 + 1_000_001_000, 42, 42, None),          # interface 0: microseconds
        (T0 + 1_000_001_001, 52, 52, None),          # interface 1: nanoseconds
        (T0 + 2_500_000_007, 62, 62, None),          # interface 2: SLL2, as Ethernet (20-byte header -> 14)
        (T0 + 3_000_000_000, 0, 0, "link_type"),     # interface 3: raw IP
        (T0 + 4_000_002_000, 42, 42, None),
        (T0 + 4_000_002_003, 52, 52, None),
    ]
    assert warnings == [f"{cap('interfaces.pcapng')}: section 0 interface 3 has link type 101 (raw IP): "
                        f"its frames are not replayed (XDP sees Ethernet frames)"]
    sll2 = list(read_frames(cap("interfaces.pcapng")))[2].data
    assert sll2 == bytes(6) + bytes.fromhex("02000000000a") + mc.udp("198.18.0.3", pad=20)[12:]


def test_sections_restart_interfaces_and_byte_order():
    got, warnings = frames("sections.pcapng")
    assert got == [
        (T0 + S, 42, 42, None),                      # little-endian section, microseconds
        (T0 + S, 42, 42, None),                      # a Simple Packet Block: the previous frame's time
        (T0 + 2 * S + 5, 42, 42, None),              # big-endian section, its interface 0: SLL in ns
        (T0 + 3 * S + 953, 42, 42, None),            # interface 1: 2^-20 s units from an offset of T0 s
    ]
    assert warnings == []


def test_linux_cooked_frames_become_ethernet():
    fr = list(read_frames(cap("sll.pcap")))          # big-endian classic pcap, microseconds
    assert [(f.ts_ns, f.wire_len, f.refused) for f in fr] == [
        (T0 + 1_000_000, 42, None), (T0 + 2_000_000, 46, None), (T0 + 3_000_000, 0, "sll_protocol")]
    mac_a = bytes.fromhex("02000000000a")
    assert fr[0].data == b"\xff" * 6 + mac_a + mc.udp("198.18.3.1", dst="198.19.255.255")[12:]   # broadcast
    assert fr[1].data[12:16] == b"\x81\x00\x00\x4d"                               # the VLAN tag stays
    (f2,) = read_frames(cap("sll2.pcap"))
    assert (f2.ts_ns, f2.data) == (T0 + 4_000_007, bytes(6) + mac_a + mc.tcp_syn("198.18.4.1", "198.19.0.2", 443)[12:])


def test_nanoseconds_stay_integers():
    got, _ = frames("ns_boundary.pcapng")
    assert [g[0] for g in got] == [T0 + S - 2, T0 + S - 1, T0 + S, T0 + S + 1]
    assert float(T0 + S - 1) / S == float(T0 + S) / S     # what a float would have made of them


def test_snap_length_keeps_the_wire_length():
    got, _ = frames("snaplen.pcap")
    assert got == [(T0 + i * 1000, min(n, mc.SNAP), n, None) for i, n in enumerate(mc.SNAP_SIZES)]


def test_truncated_and_corrupt_pcapng_stop_where_they_break(tmp_path):
    data = (CAPS / "interfaces.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-10])
    with pytest.raises(CaptureError) as e:
        list(read_frames(str(cut)))
    assert e.value.frames == 5
    assert f"{cut}: stopped after frame 5 near byte 602: the file is truncated or corrupt (a block of 84 bytes " \
           f"but the file ends 10 bytes short)" == str(e.value)
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data[:-1] + b"\x99")               # the last block's trailing length
    with pytest.raises(CaptureError, match=r"stopped after frame 5 .*\(a block whose two lengths differ\)"):
        list(read_frames(str(bad)))
    orphan = tmp_path / "orphan.pcapng"
    orphan.write_bytes(mc.shb("<") + mc.epb("<", 0, 1, mc.udp("198.18.0.1")))
    with pytest.raises(CaptureError, match=r"stopped after frame 0 .*\(a packet of interface 0, of which "
                                           r"the section has 0\)"):
        list(read_frames(str(orphan)))


# ---- replay, on both engines --------------------------------------------------------------------

@pytest.fixture(params=[pytest.param("kernel", marks=pytest.mark.kernel), "reference"])
def specs_engine(request):
    """An engine for spec files of specs/ (``make("dns_amplification", "port_scan")``)."""
    made = []

    def make(*names):
        eng = open_engine(request.param, compile_files([str(SPECS / f"{n}.mon") for n in names], replay=True))
        made.append(eng)
        return eng
    yield make
    for e in made:
        e.close()


TIMES = "app t { t2 { f = count(), min(pkt.ts) as first, max(pkt.ts) as last, sum(pkt.len) as bytes by ip.src } }"


def per_src(snap):
    return {e["key"]["ip.src"]: e["value"] for e in stat(snap, "t", "f")}


def replay_counters(snap):
    return {k: v for k, v in snap["counters"].items() if k.startswith("replay.")}


def nothing_refused(**kw):
    out = {"replay.refused": 0, "replay.refused.short": 0, "replay.refused.oversize": 0,
           "replay.refused.link_type": 0, "replay.refused.sll_protocol": 0, "replay.cut": 0, "replay.backwards": 0}
    out.update(kw)
    return out


def test_replay_of_interfaces_of_every_kind(engine):
    eng = engine(TIMES)
    rep = replay_captures(eng, [cap("interfaces.pcapng")])
    snap = eng.snapshot()
    assert per_src(snap) == {
        "198.18.0.1": {"count": 2, "first": T0 + 1_000_001_000, "last": T0 + 4_000_002_000, "bytes": 84},
        "198.18.0.2": {"count": 2, "first": T0 + 1_000_001_001, "last": T0 + 4_000_002_003, "bytes": 104},
        "198.18.0.3": {"count": 1, "first": T0 + 2_500_000_007, "last": T0 + 2_500_000_007, "bytes": 62},
    }
    assert snap["counters"]["frames"] == 5 and snap["counters"]["parse.ok"] == 5
    assert replay_counters(snap) == nothing_refused(**{"replay.refused": 1, "replay.refused.link_type": 1})
    assert (eng.stats.frames, rep.problems, len(rep.warnings)) == (6, [], 1)


def test_replay_of_two_sections(engine):
    eng = engine(TIMES)
    replay_captures(eng, [cap("sections.pcapng")])
    snap = eng.snapshot()
    assert per_src(snap) == {
        "198.18.1.1": {"count": 1, "first": T0 + S, "last": T0 + S, "bytes": 42},
        "198.18.1.2": {"count": 1, "first": T0 + S, "last": T0 + S, "bytes": 42},
        "198.18.2.1": {"count": 1, "first": T0 + 2 * S + 5, "last": T0 + 2 * S + 5, "bytes": 42},
        "198.18.2.2": {"count": 1, "first": T0 + 3 * S + 953, "last": T0 + 3 * S + 953, "bytes": 42},
    }
    assert replay_counters(snap) == nothing_refused()


def test_replay_of_linux_cooked_captures(engine):
    eng = engine("app s { t2 { m = count() by (eth.src, eth.dst)  v = count() by vlan.id  "
                 "p = count() by ip.proto } }")
    replay_captures(eng, [cap("sll.pcap"), cap("sll2.pcap")])
    snap = eng.snapshot()
    a = "02:00:00:00:00:0a"
    assert stat(snap, "s", "m") == [
        {"key": {"eth.src": a, "eth.dst": "00:00:00:00:00:00"}, "value": {"count": 2}},
        {"key": {"eth.src": a, "eth.dst": "ff:ff:ff:ff:ff:ff"}, "value": {"count": 1}},
    ]
    assert stat(snap, "s", "v") == [{"key": {"vlan.id": 77}, "value": {"count": 1}}]
    assert stat(snap, "s", "p") == [{"key": {"ip.proto": 6}, "value": {"count": 1}},
                                    {"key": {"ip.proto": 17}, "value": {"count": 2}}]
    assert replay_counters(snap) == nothing_refused(**{"replay.refused": 1, "replay.refused.sll_protocol": 1})


def test_one_nanosecond_before_a_window_boundary(engine):
    eng = engine("app w { t2 { c = count(), min(pkt.ts) as first by ip.src window 1s } }")
    replay_captures(eng, [cap("ns_boundary.pcapng")])
    # two frames 2 and 1 ns before the boundary, two on it and 1 ns after
    assert stat(eng.snapshot(), "w", "c") == [
        {"key": {"ip.src": "198.18.0.7"}, "value": {"count": 2, "first": T0 + S},
         "last_window": {"count": 2, "first": T0 + S - 2}}]
    assert stat(eng.snapshot(now=T0 + 2 * S), "w", "c") == [
        {"key": {"ip.src": "198.18.0.7"}, "value": {"count": 0, "first": None},
         "last_window": {"count": 2, "first": T0 + S}}]
    assert stat(eng.snapshot(now=T0 + 3 * S), "w", "c") == []


def test_cut_frames_count_at_their_wire_length(specs_engine):
    eng = specs_engine("traffic_accounting", "pkt_sizes")
    replay_captures(eng, [cap("snaplen.pcap")])
    snap = eng.snapshot()
    assert stat(snap, "traffic_accounting", "per_dst") == [
        {"key": {"ip.dst": "198.19.0.1"}, "value": {"packets": 5, "bytes": 64 + 128 + 300 + 1500 + 9000}}]
    assert stat(snap, "pkt_sizes", "sizes") == [
        {"key": {"ip.proto": 6}, "value": {"hist_pkt_len": {"128-255": 1, "1024-2047": 1}, "count": 2, "bytes": 1628}},
        {"key": {"ip.proto": 17}, "value": {"hist_pkt_len": {"64-127": 1, "256-511": 1, "8192-16383": 1}, "count": 3,
                                            "bytes": 9364}},
    ]
    assert snap["counters"]["parse.ok"] == 5            # the 96 bytes kept hold every header
    assert replay_counters(snap) == nothing_refused(**{"replay.cut": 4})


NO_LAST = {"count": 0, "bytes": 0}     # the window before had no DNS packet
DNS_AMP = {"queries": [{"key": {"ip.src": mc.SCANNER}, "value": {"count": 2, "bytes": 138}, "last_window": NO_LAST}],
           "responses": [{"key": {"ip.dst": mc.SCANNER}, "value": {"count": 1, "bytes": 94}, "last_window": NO_LAST}]}


def test_backwards_time_changes_nothing_of_an_app_merged_with_others(specs_engine):
    alone = specs_engine("dns_amplification")
    merged = specs_engine("dns_amplification", "port_scan")
    # the apps share a map (both keyed by ip.src, 10 s windows): the probe 6 s back in
    # time touches only port_scan's slot; one window marker for both once reset dns's
    slots = {s["identity"]: m["name"] for m in merged.manifest.raw["maps"] for s in m["slots"]}
    assert len({n for i, n in slots.items() if "window 10000000000" in i and "key(ip.src)" in i}) == 1, slots
    snaps = []
    for eng in (alone, merged):
        replay_captures(eng, [cap("backwards.pcap")])
        snap = eng.snapshot()
        snaps.append(snap["apps"]["dns_amplification"])
        assert snap["apps"]["dns_amplification"]["stats"] == DNS_AMP
        assert (snap["counters"]["replay.backwards"], eng.stats.max_back_ns) == (1, 6 * S)
    assert snaps[0] == snaps[1]


def test_oversize_frames_are_refused_for_their_own_reason(engine):
    eng = engine("app a { t2 { c = count(), max(pkt.len) as big } }")
    replay_captures(eng, [cap("oversize.pcap")])
    snap = eng.snapshot()
    assert stat(snap, "a", "c") == {"value": {"count": 1, "big": 42}}
    assert replay_counters(snap) == nothing_refused(**{"replay.refused": 2, "replay.refused.oversize": 1,
                                                       "replay.refused.short": 1})


# ---- what xdpmon replay says ----------------------------------------------------------------------

def xdpmon(*args):
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.kernel
def test_replay_says_what_it_did_not_run_and_what_it_cut():
    r = xdpmon("replay", "specs/traffic_accounting.mon", "--pcap", cap("snaplen.pcap"),
               "--pcap", cap("oversize.pcap"), "--pcap", cap("interfaces.pcapng"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == (
        "14 frames replayed through the kernel engine (3 refused: 1 shorter than an Ethernet header (14 bytes); "
        "1 longer than the kernel runs in a test run (73,152 bytes with the replay header); 1 of an interface whose "
        "link type is neither Ethernet nor Linux cooked (SLL, SLL2); 4 cut by the capture's snap length, counted at "
        "their length on the wire)")
    assert r.stderr.splitlines() == [
        f"xdpmon: warning: {cap('interfaces.pcapng')}: section 0 interface 3 has link type 101 (raw IP): its frames "
        f"are not replayed (XDP sees Ethernet frames)"]


@pytest.mark.kernel
def test_replay_warns_when_time_goes_backwards():
    r = xdpmon("replay", "specs/dns_amplification.mon", "--pcap", cap("backwards.pcap"), "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "xdpmon: warning: time went backwards 1 times in the captures, by up to 6,000,000,000 ns (replay.backwards): "
        "a windowed statistic then restarts in the earlier window, and expiries and rate limits run on the earlier "
        "clock; give the captures in time order"]
    snap = json.loads(r.stdout)
    assert snap["replay"]["backwards"] == 1 and snap["apps"]["dns_amplification"]["stats"] == DNS_AMP
