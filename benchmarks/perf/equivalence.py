"""Do merged and separate programs compute the same statistics?

Fresh programs (``XdpmonProgram``) of every configuration compared are run on
the same frames -- every benchmark frame R times (the new-flow SYN through the
wrapper from the same first source) and the capture sample once -- frame by frame
in turn, and then their snapshots are taken at the same clock ``now`` and
compared app by app.

What "the same" means:

- every value that does not depend on when a packet arrived (counts, sums,
  histograms, min/max of packet fields, distinct estimates, track table keys,
  the listed keys of every statistic, window bounds, params, enable state) is
  equal, exactly;
- a value that is a time (``min``/``max`` of ``pkt.ts``, a track entry's
  ``opened``) differs between programs by when each ran, so it must be present
  in both or absent in both and lie within the pass (between its first and last
  frame on the kernel clock);
- windows: the pass starts just after a 10 s boundary of the kernel clock (the
  longest window of specs/ is 10 s, every window divides it) and must end within
  the same 1 s window, so every program counts every frame in the same window;
  a pass that crossed a boundary anyway (a stalled machine) is reported as not
  compared.
"""

from __future__ import annotations

import time

from runtime.engines.live import monotonic_coarse_ns, monotonic_ns

COARSE_TICK_MARGIN_S = 0.010           # past a boundary: more than a tick of the coarse clock

from . import frames as F
from . import runner as Rn
from .checks import XDP_PASS, FrameCheckError

WINDOW_ALIGN_NS = 10_000_000_000
PASS_LIMIT_NS = 1_000_000_000
TIME = "(a time within the pass)"


def time_members(manifest) -> set[tuple[str, str, str]]:
    """(app, stat, value name) of every value that is a kernel time."""
    out = set()
    for m in manifest.raw["maps"]:
        for slot in m.get("slots", []):
            if "pkt.ts" in slot.get("args", []):
                out |= {(u["app"], u["stat"], u["member"]) for u in slot["uses"]}
        if m["kind"] == "track":
            out |= {(u["app"], u["stat"], "opened") for u in m["uses"]}
    return out


def normalise(app: str, snap: dict, times: set, start: int, end: int) -> dict:
    """An app's snapshot with every time value replaced by TIME when it lies in
    [start, end] (left as it is otherwise, so that it shows in the difference),
    and every list of keyed entries in a canonical order."""
    def walk(stat, x):
        if isinstance(x, dict):
            return {k: (TIME if (app, stat, k) in times and isinstance(v, int) and start <= v <= end
                        else walk(stat, v)) for k, v in x.items()}
        if isinstance(x, list):
            return sorted((walk(stat, v) for v in x), key=repr)
        return x
    return {**snap, "stats": {stat: walk(stat, st) for stat, st in snap["stats"].items()}}


def restricted(snap: dict, to: dict) -> dict:
    """``snap`` with only the params, statistics and windows ``to`` has: the four reference
    apps are measured with the paper's flow_watch (benchmarks/specs/flow_watch.mon, distinct
    flows only), which specs/flow_watch.mon extends with a SYN trigger of its own."""
    return {**snap, **{part: {k: v for k, v in snap.get(part, {}).items() if k in to.get(part, {})}
                       for part in ("params", "stats", "windows")}}


def differences(a, b, path: str = "") -> list[str]:
    """Where two normalised snapshots differ (paths to the first few)."""
    if type(a) is not type(b):
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'second' if k not in a else 'first'}")
            else:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} entries != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def wait_for_window_start() -> None:
    """Sleep until just after the next 10 s boundary of the kernel clock, on both of its
    readings: the programs read CLOCK_MONOTONIC_COARSE (every window of these specs is
    >= 100 ms), up to a tick (4 ms at HZ=250) behind CLOCK_MONOTONIC."""
    now = monotonic_ns()
    time.sleep(((now // WINDOW_ALIGN_NS + 1) * WINDOW_ALIGN_NS - now) / 1e9 + COARSE_TICK_MARGIN_S)


def run_pass(targets: list[Rn.Target], frames: list[F.BenchFrame], capture: list[bytes], repeat: int
             ) -> tuple[int, int]:
    """Every frame ``repeat`` times through every target, then the capture; (start,
    end) ns. Each run is one BPF_PROG_TEST_RUN call of repeat 1 (a call of repeat
    > 1 may yield the CPU to other tasks for a time slice, and the pass must stay
    within one window); the new-flow SYN of call i has source base + i + 1, as
    repeat i of a timed run. Not checked run by run (reading the counters takes
    milliseconds): every verdict must be XDP_PASS and each program's counters
    must add up at the end to what all those frames must give."""
    before = {t.name: t.check.probe() for t in targets}
    datas = [[Rn.syn_frame(f, i, 1) if f.new_flow else f.data for i in range(repeat)] for f in frames]
    start = monotonic_coarse_ns()      # (coarse <= fine: a kernel time of either clock is after it)
    for i in range(repeat):
        for frame, data in zip(frames, datas):
            for t in targets:
                r = (t.wrapped if frame.new_flow else t.direct).run(data[i], 1)
                if r.retval != XDP_PASS:
                    raise FrameCheckError(f"{t.name}, frame {frame.name}: verdict {r.retval}, expected XDP_PASS")
    for t in targets:
        if capture and any(r.retval != XDP_PASS for r in t.direct.run_many(capture)):
            raise FrameCheckError(f"{t.name}: a capture frame did not pass")
    end = monotonic_ns()
    for t in targets:
        after = t.check.probe()
        t.check.verify_counters(before[t.name], after, [f.data for f in frames for _ in range(repeat)] + capture,
                                "the equivalence pass")
    return start, end


# The configurations of the four reference apps as the paper has them (benchmarks/four_apps.py
# spec_file): compared with one of specs/, that one's snapshot is restricted to theirs.
PAPER_CONFIGS = {"reference4", "handwritten", "dispatcher"}


def compare(targets: dict, pairs: list[tuple[str, str, str]], frames: list[F.BenchFrame],
            capture: list[bytes], repeat: int = 20) -> dict:
    """Run the pass on ``targets`` (name -> runner.Target, freshly loaded: nothing
    run yet; each ``snapshot_apps(now)`` takes the clock to read windows on) and
    compare ``pairs`` of (app, config A, config B): that app's snapshot in A and in B. Returns {"pairs": [{"app", "a", "b", "differences"}],
    "repeat", "start_ns", "end_ns", "same"}; a pass that crossed a 1 s window
    (a stalled machine) is not compared ("crossed_window": True, "same": None)."""
    wait_for_window_start()
    start, end = run_pass(list(targets.values()), frames, capture, repeat)
    out = {"repeat": repeat, "start_ns": start, "end_ns": end, "pass_ms": round((end - start) / 1e6, 1)}
    if end // PASS_LIMIT_NS != start // PASS_LIMIT_NS:
        return {**out, "crossed_window": True, "same": None, "pairs": []}
    snaps = {n: t.prog.snapshot_apps(end) for n, t in targets.items() if any(n in (a, b) for _, a, b in pairs)}
    times = set()
    for t in targets.values():
        if hasattr(t.prog, "manifest"):
            times |= time_members(t.prog.manifest)
    rows = []
    for app, a, b in pairs:
        sa, sb = snaps[a][app], snaps[b][app]
        if a in PAPER_CONFIGS and b not in PAPER_CONFIGS:
            sb = restricted(sb, sa)
        elif b in PAPER_CONFIGS and a not in PAPER_CONFIGS:
            sa = restricted(sa, sb)
        na = normalise(app, sa, times, start, end)
        nb = normalise(app, sb, times, start, end)
        rows.append({"app": app, "a": a, "b": b, "differences": differences(na, nb)[:10]})
    return {**out, "crossed_window": False, "same": all(not r["differences"] for r in rows), "pairs": rows}
