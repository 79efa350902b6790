"""Configurations measured side by side: round by round, interleaved, checked.

Every round runs every frame through every configuration (in an order rotated
from round to round, so no configuration always runs first or after the same
neighbour), each with BPF_PROG_TEST_RUN ``repeat`` R; the kernel's mean time
per repeat is recorded only after the run's check (benchmarks/perf/checks.py)
passed. A new-flow frame is run through the new-flow wrapper
(benchmarks/perf/newflow.py), in every configuration alike (the floor too),
and round k's run starts at the same source in every configuration, so they
all see the same packets. The capture sample is run in order, each frame once
(repeat 1: nothing can carry over), and its mean per frame recorded; its
counters must add up to what the reference decoder says of its frames.

A round's samples are kept per round (``samples[frame][config][round]``), so
that statistics can pair a configuration with the floor of the same round.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from runtime.dataplane.bpf_test_run import TestRunner

from . import frames as F
from .checks import RunCheck, XDP_PASS, FrameCheckError
from .newflow import NewFlowWrapper

CAPTURE = "capture_in_order"


@dataclass
class Target:
    """One configuration ready to run: the program, its check, its runners."""
    name: str
    prog: object
    check: RunCheck
    direct: TestRunner
    wrapper: NewFlowWrapper | None = None
    wrapped: TestRunner | None = None

    def close(self) -> None:
        if self.wrapper is not None:
            self.wrapper.close()
        self.prog.close()


def prepare(name: str, prog, new_flow: bool = True, keyed=None) -> Target:
    """``prog`` ready to run: its check (``keyed``: see RunCheck) and runners, and
    the new-flow wrapper in front of it unless ``new_flow`` is false."""
    t = Target(name, prog, RunCheck(name, prog, keyed), TestRunner(prog.fd, want_data_out=False))
    if new_flow:
        t.wrapper = NewFlowWrapper(prog.fd)
        t.wrapped = TestRunner(t.wrapper.fd, want_data_out=False)
    return t


def syn_frame(frame: F.BenchFrame, run_index: int, repeat: int) -> bytes:
    """The new-flow frame of run ``run_index``: its repeats see the sources after
    base + run_index * repeat (the wrapper adds 1 before each)."""
    F.source_after(F.SYN_BASE, (run_index + 1) * repeat)       # the last source, in range
    return F.with_source(frame, F.source_after(F.SYN_BASE, run_index * repeat))


def run_checked(t: Target, frame: F.BenchFrame, repeat: int, run_index: int = 0) -> int:
    """One checked run of ``frame`` x ``repeat`` on ``t``; the kernel's mean ns per repeat."""
    if frame.new_flow:
        if t.wrapped is None:
            raise ValueError(f"{t.name}: prepared without the new-flow wrapper, cannot run {frame.name}")
        data, runner = syn_frame(frame, run_index, repeat), t.wrapped
    else:
        data, runner = frame.data, t.direct
    before = t.check.probe(frame.new_keys, frame.dst)
    r = runner.run(data, repeat)
    after = t.check.probe(frame.new_keys, frame.dst)
    t.check.verify(before, after, data, repeat, r.retval, frame_name=frame.name, dst=frame.dst,
                   new_keys=frame.new_keys)
    return r.duration_ns


def run_capture(t: Target, frames: list[bytes]) -> float:
    """The capture sample in order, once each; mean ns per frame (checked)."""
    before = t.check.probe()
    results = list(t.direct.run_many(frames))
    after = t.check.probe()
    bad = [i for i, r in enumerate(results) if r.retval != XDP_PASS]
    if bad:
        raise FrameCheckError(f"{t.name}: {len(bad)} capture frames did not pass (first: frame {bad[0]}, "
                              f"verdict {results[bad[0]].retval})")
    t.check.verify_counters(before, after, frames, "the capture sample")
    return sum(r.duration_ns for r in results) / len(results)


@dataclass
class Samples:
    """ns per packet, ``data[frame][config]`` a list with one value per round."""
    repeat: int
    rounds: int
    cpu: int | None
    data: dict = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, frame: str, config: str, value: float) -> None:
        self.data.setdefault(frame, {}).setdefault(config, []).append(value)


def pin_cpu() -> int:
    """Pin this process (and so its test runs) to one CPU: no migration between
    rounds. XDPMON_BENCH_CPU chooses it (default: the highest allowed)."""
    cpu = int(os.environ.get("XDPMON_BENCH_CPU", max(os.sched_getaffinity(0))))
    os.sched_setaffinity(0, {cpu})
    return cpu


def measure(targets: list[Target], frames: list[F.BenchFrame], capture: list[bytes] | None,
            rounds: int, repeat: int, warmup: int = 1, progress=None, first_run: int = 1) -> Samples:
    """``rounds`` interleaved rounds (after ``warmup`` unrecorded, checked rounds).
    Round k's new-flow runs start at source base + (first_run + k) x repeat
    (first_run > 0 leaves the first ``repeat`` sources to the equivalence pass)."""
    if rounds < 1 or repeat < 1:
        raise ValueError(f"rounds ({rounds}) and repeat ({repeat}) must be at least 1")
    out = Samples(repeat, rounds, None)
    t0 = time.perf_counter()
    n = len(targets)
    for k in range(warmup + rounds):
        order = targets[k % n:] + targets[:k % n]
        for frame in frames:
            for t in order:
                ns = run_checked(t, frame, repeat, run_index=first_run + k)
                if k >= warmup:
                    out.add(frame.name, t.name, ns)
        if capture:
            for t in order:
                ns = run_capture(t, capture)
                if k >= warmup:
                    out.add(CAPTURE, t.name, ns)
        if progress:
            progress(k - warmup + 1, rounds)
    out.seconds = time.perf_counter() - t0
    return out
