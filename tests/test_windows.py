"""Windowed statistics: a snapshot shows the current window and the last completed
one, exactly, on both engines (the kernel under BPF_PROG_TEST_RUN, the reference).

Every windowed slot keeps, next to its value, the final value of the window before
its own (copied when the first packet of a new window resets it); the decoder
(runtime/abi/snapshot.py) reads at a clock ``now`` in window E: a slot of E gives
its value now and its kept value as the last, a slot of E - 1 gives nothing now
and its value as the last, an older one nothing at all.
"""

from __future__ import annotations

from scapy.all import IP, UDP

from engine_helpers import S, Eth, stat, tcp, udp

A, B, C = "198.19.0.1", "198.19.0.2", "198.19.0.3"

SPEC = """
app w {
  t1 { select ip }
  t2 {
    per   = count(), sum(pkt.len) as bytes, min(pkt.len) as lo, max(pkt.len) as hi, hist(pkt.len) as sizes,
            distinct(l4.sport) as ports by ip.dst window 1s
    tot   = count(), min(ip.ttl) as lo, max(ip.ttl) as hi, distinct(ip.src) as srcs window 1s
    heavy = cms(ip.src, width=64, depth=2) window 1s
    all   = count() by ip.dst
  }
}
"""

# window 5 ([5 s, 6 s)): three frames to A (54, 154 and 1054 bytes, sports 1..3), two
# UDP frames to B; window 6: one frame to A (64 bytes) and one to C.
WINDOW_5 = [(5 * S + 1000, tcp(src="198.18.0.1", dst=A, sport=1)),
            (5 * S + 2000, tcp(src="198.18.0.2", dst=A, sport=2, pad=100)),
            (5 * S + 3000, tcp(src="198.18.0.3", dst=A, sport=3, pad=1000)),
            (5 * S + 4000, udp(src="198.18.0.4", dst=B, sport=7)),
            (6 * S - 1, bytes(Eth() / IP(src="198.18.0.4", dst=B, ttl=9) / UDP(sport=7, dport=53)))]
WINDOW_6 = [(6 * S + 10, tcp(src="198.18.0.1", dst=A, sport=9, pad=10)),
            (6 * S + 20, udp(src="198.18.0.5", dst=C, sport=8))]

EMPTY = {"count": 0, "bytes": 0, "lo": None, "hi": 0, "sizes": {}, "ports": 0}
A_5 = {"count": 3, "bytes": 54 + 154 + 1054, "lo": 54, "hi": 1054,
       "sizes": {"32-63": 1, "128-255": 1, "1024-2047": 1}, "ports": 3}
B_5 = {"count": 2, "bytes": 2 * 42, "lo": 42, "hi": 42, "sizes": {"32-63": 2}, "ports": 1}
A_6 = {"count": 1, "bytes": 64, "lo": 64, "hi": 64, "sizes": {"64-127": 1}, "ports": 1}
C_6 = {"count": 1, "bytes": 42, "lo": 42, "hi": 42, "sizes": {"32-63": 1}, "ports": 1}
TOT_EMPTY = {"count": 0, "lo": None, "hi": 0, "srcs": 0}
TOT_5 = {"count": 5, "lo": 9, "hi": 64, "srcs": 4}
TOT_6 = {"count": 2, "lo": 64, "hi": 64, "srcs": 2}


def run(eng, frames):
    for ts, f in frames:
        eng.run_frame(ts, f)


def entry(dst, value, last):
    return {"key": {"ip.dst": dst}, "value": value, "last_window": last}


def windows(snap, stat_name):
    return snap["apps"]["w"]["windows"][stat_name]


def test_current_and_last_window(engine):
    eng = engine(SPEC)
    run(eng, WINDOW_5)
    snap5 = eng.snapshot(now=6 * S - 1)
    assert stat(snap5, "w", "per") == [entry(A, A_5, EMPTY), entry(B, B_5, EMPTY)]
    assert stat(snap5, "w", "tot") == {"value": TOT_5, "last_window": TOT_EMPTY}
    run(eng, WINDOW_6)
    snap = eng.snapshot()
    # B had packets only in the last window: listed, empty now
    assert stat(snap, "w", "per") == [entry(A, A_6, A_5), entry(B, EMPTY, B_5), entry(C, C_6, EMPTY)]
    assert stat(snap, "w", "tot") == {"value": TOT_6, "last_window": TOT_5}
    # what the last window shows is exactly what its reading showed before it ended
    assert {e["key"]["ip.dst"]: e["last_window"] for e in stat(snap, "w", "per") if e["last_window"] != EMPTY} == \
        {e["key"]["ip.dst"]: e["value"] for e in stat(snap5, "w", "per")}
    assert windows(snap, "per") == {"window_ns": S, "current": {"start_ns": 6 * S, "end_ns": 7 * S},
                                    "last": {"start_ns": 5 * S, "end_ns": 6 * S}, "not_kept": []}
    # an unwindowed statistic has neither
    assert stat(snap, "w", "all") == [{"key": {"ip.dst": A}, "value": {"count": 4}},
                                      {"key": {"ip.dst": B}, "value": {"count": 2}},
                                      {"key": {"ip.dst": C}, "value": {"count": 1}}]
    assert "all" not in snap["apps"]["w"]["windows"]


def test_read_in_the_next_window_before_any_of_its_packets(engine):
    eng = engine(SPEC)
    run(eng, WINDOW_5)
    snap = eng.snapshot(now=6 * S)             # the first nanosecond of window 6, no packet yet
    assert stat(snap, "w", "per") == [entry(A, EMPTY, A_5), entry(B, EMPTY, B_5)]
    assert stat(snap, "w", "tot") == {"value": TOT_EMPTY, "last_window": TOT_5}


def test_a_skipped_window_leaves_the_last_one_empty(engine):
    eng = engine(SPEC)
    run(eng, WINDOW_5)
    snap = eng.snapshot(now=7 * S)             # window 7: window 6 had no packet
    assert stat(snap, "w", "per") == []
    assert stat(snap, "w", "tot") == {"value": TOT_EMPTY, "last_window": TOT_EMPTY}
    # the first packets of window 7 reset slots of window 5: nothing of it is kept
    run(eng, [(7 * S + 10, tcp(src="198.18.0.1", dst=A, sport=9, pad=10))])
    snap = eng.snapshot()
    assert stat(snap, "w", "per") == [entry(A, A_6, EMPTY)]
    assert stat(snap, "w", "tot") == {"value": {"count": 1, "lo": 64, "hi": 64, "srcs": 1}, "last_window": TOT_EMPTY}
    # and one window on, window 7 is the last one
    run(eng, [(8 * S + 10, udp(src="198.18.0.5", dst=C, sport=8))])
    snap = eng.snapshot()
    assert stat(snap, "w", "per") == [entry(A, EMPTY, A_6), entry(C, C_6, EMPTY)]
    assert stat(snap, "w", "tot") == {"value": {"count": 1, "lo": 64, "hi": 64, "srcs": 1},
                                      "last_window": {"count": 1, "lo": 64, "hi": 64, "srcs": 1}}


def test_two_windows_on_nothing_is_left(engine):
    eng = engine(SPEC)
    run(eng, WINDOW_5 + WINDOW_6)
    assert stat(eng.snapshot(now=7 * S), "w", "per") == [entry(A, EMPTY, A_6), entry(C, EMPTY, C_6)]
    assert stat(eng.snapshot(now=8 * S), "w", "per") == []
    assert stat(eng.snapshot(now=8 * S), "w", "tot") == {"value": TOT_EMPTY, "last_window": TOT_EMPTY}


def test_count_min_keeps_no_last_window(engine):
    eng = engine(SPEC)
    run(eng, WINDOW_5 + WINDOW_6)
    snap = eng.snapshot()
    assert stat(snap, "w", "heavy") == {"value": {"cms_ip_src": {"total": 2, "width": 64, "depth": 2}},
                                        "last_window": {}}
    assert windows(snap, "heavy")["not_kept"] == ["cms_ip_src"]


def test_the_clock_s_first_window_has_no_last_one(engine):
    eng = engine("app w { t2 { c = count() window 1s } }")
    eng.run_frame(S // 2, tcp())
    snap = eng.snapshot()
    assert stat(snap, "w", "c") == {"value": {"count": 1}, "last_window": {"count": 0}}
    assert windows(snap, "c") == {"window_ns": S, "current": {"start_ns": 0, "end_ns": S}, "last": None,
                                  "not_kept": []}
    eng.run_frame(S, tcp())
    assert stat(eng.snapshot(), "w", "c") == {"value": {"count": 1}, "last_window": {"count": 1}}


def test_time_going_back_keeps_no_last_window(engine):
    """A packet of an earlier window restarts the slot there (README): the window it
    left is not the one before, so nothing is kept."""
    eng = engine("app w { t2 { c = count() by ip.dst window 1s } }")
    run(eng, [(5 * S, tcp()), (5 * S + 1, tcp()), (3 * S, tcp())])
    assert stat(eng.snapshot(now=3 * S), "w", "c") == [entry(A, {"count": 1}, {"count": 0})]
    assert stat(eng.snapshot(now=6 * S), "w", "c") == []
