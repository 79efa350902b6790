"""What the equality tests of the four apps' configurations share
(tests/test_handwritten.py, tests/test_dispatcher.py): frames run side by side in one
window, events compared without xdpmon's own ids, keyed entries found by key."""

from __future__ import annotations

import pytest

WINDOW_NS = 1_000_000_000


def paired_programs(other):
    """A fixture body: ``make(syn_enabled)`` loads xdpmon's merged program and ``other``
    (a configuration class) side by side, both closed when the test ends."""
    from benchmarks.four_apps import GeneratedApps

    made = []

    def make(syn_enabled: bool):
        pair = GeneratedApps(syn_enabled=syn_enabled), other(syn_enabled=syn_enabled)
        made.extend(pair)
        return pair
    yield make
    for p in made:
        p.close()


def run_side_by_side(progs, frames) -> dict[str, int]:
    """Each frame through every program in turn, ``repeats`` times (one test run each:
    a test run of several repeats yields the CPU between them when others wait for it,
    tens of ms on a busy machine); every verdict is XDP_PASS. Returns the longest
    wall-clock time (ns) the SYN flood frame's runs took over the programs."""
    from benchmarks.four_apps import kernel_clock_ns
    from runtime.dataplane.bpf_test_run import TestRunner

    runners = [TestRunner(p.fd, want_data_out=False) for p in progs]
    wall = 0
    for what, frame, n in frames:
        for r in runners:
            t0 = kernel_clock_ns()
            verdicts = {res.retval for res in r.run_many([frame] * n)}
            t1 = kernel_clock_ns()
            assert verdicts == {2}, f"{what}: verdicts {verdicts}"
            if what == "syn flood":
                wall = max(wall, t1 - t0)
    return {"flood_wall_ns": wall}


def check_limited_sends(events: list[dict], limited: int, firings: int, wall_ns: int) -> list[dict]:
    """The SYN flood's sends under its limit of 1000/s (GCRA): every firing was sent or
    counted as rate-limited; at least the burst of 1,000 was sent, and at most one more per
    millisecond the flood's run took (each send costs the ring buffer's wake-up, microseconds
    on this VM, so the 1,000 take milliseconds and earn a few tokens more: how many depends
    on each run's timing, which is why two programs' counts are compared only through this).
    Returns the packet events."""
    sent = [e for e in events if e["type"] == "packet"]
    assert len(sent) + limited == firings
    assert 1000 <= len(sent) <= 1000 + wall_ns // 1_000_000 + 1, (len(sent), wall_ns)
    return sent


def in_one_window(make, frames, attempts: int = 3):
    """``make()`` programs and run the frames through them side by side, starting at a
    window's start, until a run ends in the window it began in (a busy machine may take
    longer; each attempt has fresh programs): returns (programs, the clock of the
    snapshots, run_side_by_side's info)."""
    from benchmarks.four_app_frames import wait_for_window_start
    from benchmarks.four_apps import kernel_clock_ns

    took = []
    for _ in range(attempts):
        progs = make()
        window = wait_for_window_start()
        info = run_side_by_side(progs, frames)
        now = kernel_clock_ns()
        if now // WINDOW_NS == window:
            return progs, now, info
        took.append(now - window * WINDOW_NS)
    pytest.fail(f"the frames took more than a window in {attempts} attempts (ended {took} ns into it): "
                "the machine is too busy")


def rules_on(progs):
    """The scenario where the rules act: flow_threshold 20 (flow_watch enables syn_flood
    among the first SYNs), per_dst 100 (the flood fires syn_flood's rule past 1000/s)."""
    for p in progs:
        p.set_param("flow_watch", "flow_threshold", 20)
        p.set_param("syn_flood", "per_dst", 100)
    return progs


def strip_action(events):
    """Events without their times (each program's own clock) and xdpmon's action ids
    (hashes of its names, which the hand-written program does not have)."""
    return [{k: v for k, v in e.items() if k not in ("action", "ts")} for e in events]


def entry(entries, **key):
    """The one entry of a keyed statistic with this key."""
    found = [e for e in entries if e["key"] == key]
    assert len(found) == 1, (key, entries)
    return found[0]
