"""What merging saves per packet: xdpmon's merged program against the same apps
as separate programs, measured with the harness of benchmarks/perf/.

The programs are the LIVE build (kernel clock, no header to strip) run under
BPF_PROG_TEST_RUN with repeat R; after every run the program's counters and a
keyed statistic must have grown exactly as R repeats of that frame demand
(benchmarks/perf/checks.py), so a frame that changed between repeats stops the
benchmark. (The old version of this file ran the replay build with repeat 200:
the header it strips stayed stripped, every repeat after the first parsed a
frame 16 bytes shorter, and its "4.7x" was not a measurement.)

Two parts, each one interleaved run (median of >= 15 rounds, paired with the
floor of the same round, quartiles):

- ``suite``: the floor (empty XDP_PASS program), each of specs/ alone, merged
  (all nine; on-demand apps on), merged with on-demand apps off, merged without
  syn_flood, the four reference apps merged, and any plugged-in configuration
  (benchmarks/perf/configs.py EXTERNAL), on 12 frames and a capture sample; first
  a pass checking that merged and separate compute the same statistics;
- ``scaling``: 1 to 64 generated apps, three degrees of overlap
  (benchmarks/perf/scaling.py), merged against separate, ns and verified
  instructions;
- ``ondemand``: what a disabled on-demand app costs, merged with syn_flood off
  against merged without it, alone with the floor, 31 rounds.

Writes benchmarks/results/merge.json, merge.md, merge_scaling.png and
merge_frames.png. Needs root and BPF. Timing is shared with other users of
the kernel: run it under ``flock /tmp/xdpmon-timing.lock``.

    python -m benchmarks.bench_merge [suite|scaling|ondemand]     (default: all three)
    XDPMON_BENCH_ROUNDS=15  XDPMON_BENCH_REPEAT=1000  XDPMON_BENCH_CPU=1
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

from benchmarks.perf import analysis as A
from benchmarks.perf import configs as C
from benchmarks.perf import equivalence as E
from benchmarks.perf import frames as F
from benchmarks.perf import report
from benchmarks.perf import runner as Rn
from benchmarks.perf import scaling as S
from benchmarks.perf import stats

def _env_int(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"bench_merge: {name}={text!r} is not a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"bench_merge: {name}={value} is out of range ({low} to {high})")
    return value


ROUNDS = _env_int("XDPMON_BENCH_ROUNDS", 15, 1, 100)
REPEAT = _env_int("XDPMON_BENCH_REPEAT", 1000, 1, 1500)   # new-flow sources: (rounds + 2) x repeat < 32768
EQ_REPEAT = 20
CAPTURE_FRAMES = 300
MIN_ROUNDS = 15
ALL = "all_frames_mean"


def _log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _load(confs: dict, **prepare) -> dict:
    targets = {}
    try:
        for name, factory in confs.items():
            targets[name] = Rn.prepare(name, factory(), **prepare.get(name, {}))
    except BaseException:
        for t in targets.values():
            t.close()
        raise
    return targets


# ---- the suite -------------------------------------------------------------------------------

def run_suite() -> dict:
    apps = C.all_spec_names()
    confs = C.merge_configurations()
    external = {}
    for name in C.EXTERNAL:
        obj, why = C.load_external(name)
        if obj is None:
            external[name] = why
        else:
            external[name] = "plugged in"
            confs[name] = (lambda o=obj: o)
    _log(f"loading {len(confs)} configurations")
    targets = _load(confs)
    try:
        frames, capture = F.benchmark_frames(), F.capture_sample(CAPTURE_FRAMES)
        pairs = [(a, "merged", f"alone:{a}") for a in apps]
        pairs += [(a, "reference4", "merged") for a in C.REFERENCE4]
        pairs += [(a, ext, "reference4") for ext, st in external.items() if st == "plugged in" for a in C.REFERENCE4]
        _log("equivalence pass (waits for a 10 s window to start)")
        eq = E.compare(targets, pairs, frames, capture, EQ_REPEAT)
        _log(f"timing: {ROUNDS} rounds x {len(frames)} frames + capture x {len(targets)} configurations, "
             f"repeat {REPEAT}")
        samples = Rn.measure(list(targets.values()), frames, capture, ROUNDS, REPEAT, first_run=1)
    finally:
        for t in targets.values():
            t.close()
    return summarise_suite(samples, apps, [n for n, st in external.items() if st == "plugged in"], external, eq)


def summarise_suite(samples: Rn.Samples, apps: list[str], externals: list[str], external: dict, eq: dict) -> dict:
    data = samples.data
    alone9 = [f"alone:{a}" for a in apps]
    alone4 = [f"alone:{a}" for a in C.REFERENCE4]
    measured = [c for c in data[Rn.CAPTURE] if c != A.FLOOR]
    frame_names = [f for f in data if f != Rn.CAPTURE]

    def series(frame: str) -> dict:
        if frame == ALL:
            return {c: A.frame_mean(data, frame_names, lambda f, c=c: series(f)[c])
                    for c in list(series(frame_names[0]))}
        s = {c: A.cost(data, frame, c) for c in measured}
        s["separate9"] = A.separate(data, frame, alone9)
        s["separate4"] = A.separate(data, frame, alone4)
        s["disabled_app_ns"] = stats.paired(data[frame]["merged_on_demand_off"], data[frame]["merged_without_syn_flood"])
        return s

    rows = []
    for frame in frame_names + [Rn.CAPTURE, ALL]:
        s = series(frame)
        floor = (stats.summary(data[frame][A.FLOOR]) if frame != ALL
                 else stats.summary(A.frame_mean(data, frame_names, lambda f: data[f][A.FLOOR])))
        ratios = {"merged/separate9": A.ratio_summary(s["merged"], s["separate9"]),
                  "reference4/separate4": A.ratio_summary(s["reference4"], s["separate4"]),
                  "merged_on_demand_off/merged": A.ratio_summary(s["merged_on_demand_off"], s["merged"])}
        for ext in externals:
            ratios[f"{ext}/reference4"] = A.ratio_summary(s[ext], s["reference4"])
            ratios[f"{ext}/separate4"] = A.ratio_summary(s[ext], s["separate4"])
        rows.append({"frame": frame, "floor": floor, "costs": {k: stats.summary(v) for k, v in s.items()},
                     "ratios": ratios, "raw": {k: [round(x, 2) for x in v] for k, v in s.items()}})
    by = {r["frame"]: r for r in rows}
    syn = series("tcp_syn_new_flow")["merged"]
    est = series("tcp_established")["merged"]
    targets = [
        A.target("merged_vs_separate_capture", by[Rn.CAPTURE]["ratios"]["merged/separate9"], 0.5, "x",
                 "all nine merged <= 0.5 x nine separate (capture in order)"),
        A.target("merged_vs_separate_frames", by[ALL]["ratios"]["merged/separate9"], 0.5, "x",
                 "all nine merged <= 0.5 x nine separate (mean of the 12 frames)"),
        A.target("disabled_app_capture", by[Rn.CAPTURE]["costs"]["disabled_app_ns"], 2.0, "ns",
                 "a disabled on-demand app adds <= 2 ns/packet (capture in order)"),
        A.target("disabled_app_frames", by[ALL]["costs"]["disabled_app_ns"], 2.0, "ns",
                 "a disabled on-demand app adds <= 2 ns/packet (mean of the 12 frames)"),
        A.target("new_flow_syn_vs_ack", A.ratio_summary(syn, est), 3.0, "x",
                 "new-flow SYN through all nine <= 3 x an established-flow ACK"),
    ]
    columns = measured + ["separate9", "separate4"]
    return {"frames": rows, "columns": columns, "external": external, "equivalence": eq, "targets": targets,
            "seconds": round(samples.seconds, 1),
            "frame_list": [{"name": f.name, "bytes": f.length, "outcome": f.outcome, "about": f.about}
                           for f in F.benchmark_frames()]}


# ---- scaling ---------------------------------------------------------------------------------

def run_scaling() -> dict:
    progs = S.programs()
    confs = {"floor": C.Floor}
    for name, text in progs.items():
        confs[name] = (lambda n=name, t=text: C.XdpmonProgram(n, texts={"apps.mon": t}))
    keyed = {name: {"keyed": ("a000" if ":merged:" in name else progs[name].split()[1], "st", "count"),
                    "new_flow": False} for name in progs}
    keyed["floor"] = {"new_flow": False}
    _log(f"scaling: loading {len(confs)} programs")
    targets = _load(confs, **keyed)
    try:
        insns = {n: t.prog.verified_insns for n, t in targets.items() if n != "floor"}
        frame = F.by_name("tcp_established")
        _log(f"scaling: timing {ROUNDS} rounds x {len(targets)} programs, repeat {REPEAT}")
        samples = Rn.measure(list(targets.values()), [frame], None, ROUNDS, REPEAT, first_run=1)
    finally:
        for t in targets.values():
            t.close()
    data = samples.data[frame.name]
    d = {frame.name: data}
    rows = []
    for ov in S.OVERLAPS:
        for n in S.SIZES:
            m = A.cost(d, frame.name, f"{ov}:merged:{n}")
            sep_names = S.separate_names(ov, n)
            sep = A.separate(d, frame.name, sep_names)
            rows.append({"overlap": ov, "apps": n, "merged": stats.summary(m), "separate": stats.summary(sep),
                         "ratio": A.ratio_summary(m, sep), "merged_insns": insns[f"{ov}:merged:{n}"],
                         "separate_insns": sum(insns[s] for s in sep_names)})
    m32 = A.cost(d, frame.name, "of8:merged:32")
    m8 = A.cost(d, frame.name, "disjoint:merged:8")
    of8 = {"merged32": stats.summary(m32), "merged8": stats.summary(m8), "ratio": A.ratio_summary(m32, m8),
           "merged32_insns": insns["of8:merged:32"]}
    by = {(r["overlap"], r["apps"]): r for r in rows}
    targets_ = [
        A.target("shared8", by[("shared", 8)]["ratio"], 0.25, "x", "8 apps fully shared <= 0.25 x separate"),
        A.target("half8", by[("half", 8)]["ratio"], 0.6, "x", "8 apps half shared <= 0.6 x separate"),
        A.target("disjoint8", by[("disjoint", 8)]["ratio"], 0.9, "x", "8 disjoint apps <= 0.9 x separate"),
        A.target("of8_32", of8["ratio"], 1.5, "x", "32 apps sharing 8 statistics <= 1.5 x the 8 apps alone (merged)"),
    ]
    return {"rows": rows, "of8": of8, "overlaps": list(S.OVERLAPS), "targets": targets_, "frame": frame.name,
            "floor": stats.summary(data["floor"]), "seconds": round(samples.seconds, 1),
            "sampling": "an app alone measured for the shared shape and the 8 disjoint key shapes; disjoint app i "
                        ">= 8 costs as app i mod 8 alone (benchmarks/perf/scaling.py)"}


# ---- what a disabled on-demand app costs --------------------------------------------------------

ONDEMAND_ROUNDS = 31
ONDEMAND_FRAMES = ("tcp_established", "tcp_synack", "dns_query", "udp_other", "truncated_tcp")


def run_ondemand() -> dict:
    """The difference the suite cannot resolve among 14 programs: merged with
    syn_flood present but off against merged without it, alone with the floor,
    more rounds, on frames that syn_flood's select would and would not take."""
    confs = C.merge_configurations()
    names = ["floor", "merged_on_demand_off", "merged_without_syn_flood"]
    targets = _load({n: confs[n] for n in names}, **{n: {"new_flow": False} for n in names})
    frames = [F.by_name(n) for n in ONDEMAND_FRAMES]
    _log(f"on-demand: timing {ONDEMAND_ROUNDS} rounds x {len(frames)} frames x {len(targets)} programs, "
         f"repeat {REPEAT}")
    try:
        samples = Rn.measure(list(targets.values()), frames, None, ONDEMAND_ROUNDS, REPEAT, first_run=1)
    finally:
        for t in targets.values():
            t.close()
    data = samples.data
    rows, diffs = [], {}
    for f in ONDEMAND_FRAMES:
        d = stats.paired(data[f]["merged_on_demand_off"], data[f]["merged_without_syn_flood"])
        diffs[f] = d
        rows.append({"frame": f, "disabled_app_ns": stats.summary(d),
                     "merged_on_demand_off": stats.summary(A.cost(data, f, "merged_on_demand_off")),
                     "merged_without_syn_flood": stats.summary(A.cost(data, f, "merged_without_syn_flood"))})
    mean = A.frame_mean(data, list(ONDEMAND_FRAMES), lambda f: diffs[f])
    return {"rows": rows, "mean": stats.summary(mean), "rounds": ONDEMAND_ROUNDS, "seconds": round(samples.seconds, 1),
            "targets": [A.target("disabled_app_isolated", stats.summary(mean), 2.0, "ns",
                                 "a disabled on-demand app adds <= 2 ns/packet (3 programs, "
                                 f"{ONDEMAND_ROUNDS} rounds, mean of {len(frames)} frames)")]}


# ---- main ------------------------------------------------------------------------------------

PARTS = ("suite", "scaling", "ondemand")


def main(parts=PARTS) -> dict:
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"bench_merge: unknown part {', '.join(unknown)} (parts: {', '.join(PARTS)})")
    if (ROUNDS + 2) * REPEAT >= 32768:
        raise ValueError(f"bench_merge: {ROUNDS} rounds x repeat {REPEAT} need more new-flow sources than "
                         f"{F.SYN_BASE}/17 holds: fewer rounds or a smaller repeat")
    if os.geteuid() != 0:
        print("merge benchmark: needs root and BPF; skipped")
        return {"skipped": "needs root"}
    if ROUNDS < MIN_ROUNDS:
        print(f"  note: XDPMON_BENCH_ROUNDS={ROUNDS} is below {MIN_ROUNDS}: a quick look, not a result")
    cpu = Rn.pin_cpu()
    path = report.OUT / "merge.json"
    result = json.loads(path.read_text()) if path.exists() and set(parts) != set(PARTS) else {}
    result.update({"kernel": platform.release(), "cpu": cpu, "repeat": REPEAT, "rounds": ROUNDS,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if "suite" in parts:
        result["suite"] = run_suite()
    if "scaling" in parts:
        result["scaling"] = run_scaling()
    if "ondemand" in parts:
        result["ondemand"] = run_ondemand()
    result["targets"] = [t for part in ("suite", "ondemand", "scaling") for t in (result.get(part) or {}).get("targets", [])]
    report.write_json(result)
    report.write_markdown(result)
    if result.get("scaling"):
        report.plot_scaling(result["scaling"])
    if result.get("suite"):
        report.plot_frames(result["suite"])
    out = {}
    if result.get("suite"):
        by = {r["frame"]: r for r in result["suite"]["frames"]}
        for f in (Rn.CAPTURE, ALL, "tcp_syn_new_flow", "tcp_established"):
            c = by[f]["costs"]
            out[f] = (f"merged {c['merged']['median']:.1f} ns, separate {c['separate9']['median']:.1f} ns, "
                      f"ratio {by[f]['ratios']['merged/separate9']['median'] if by[f]['ratios']['merged/separate9'] else 'n/a'}")
        out["equivalence"] = result["suite"]["equivalence"]["same"]
        out["external"] = result["suite"]["external"]
    for t in result["targets"]:
        out[t["target"]] = f"{t['median']} {t['unit']} (limit {t['limit']}): {'met' if t['met'] else 'MISSED'}"
    return out


if __name__ == "__main__":
    from benchmarks.__main__ import print_results
    print_results(main(tuple(sys.argv[1:]) or PARTS))
