"""Where the merged program's time goes, stage by stage: the clock and parser, the global
counters and filters, the per-packet setup, T1's predicates, T2's maps, T3's rules
(benchmarks/perf/breakdown.py: the program cut short after each stage, timed side by side).

Two programs, each with its cuts, on the harness's twelve frames (benchmarks/perf/frames.py,
the new-flow SYN through the new-flow wrapper, the floor too):

* ``nine``: all of specs/ merged (on-demand apps on, every param 2^64 - 1: rules are
  evaluated on every packet and never fire);
* ``four``: the paper's four reference apps (benchmarks/four_apps.py), and beside them the
  hand-written program of the same apps (benchmarks/handwritten/) for its total.

One interleaved run: ``ROUNDS`` rounds, in each every frame through every configuration
(order rotated), ``REPEAT`` repeats a run, every run checked (the verdict; from the
counters stage on, the counters; from T2 on, the statistics and the new keys), pinned to
one CPU. A stage's cost is the median over the rounds of its cut minus the cut before
(the floor before the first); quartiles beside it. Writes benchmarks/results/breakdown.json
and breakdown.png (stacked bars). Run under the timing lock:

    flock /tmp/xdpmon-timing.lock .venv/bin/python -m benchmarks.bench_breakdown
    XDPMON_BENCH_ROUNDS=15  XDPMON_BENCH_REPEAT=1000  XDPMON_BENCH_CPU=1
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.perf import breakdown as B
from benchmarks.perf import configs as C
from benchmarks.perf import frames as F
from benchmarks.perf import runner as Rn
from benchmarks.perf import stats

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
ROUNDS = int(os.environ.get("XDPMON_BENCH_ROUNDS", "15"))
REPEAT = int(os.environ.get("XDPMON_BENCH_REPEAT", "1000"))    # new-flow sources: (rounds + 1) x repeat < 32768
MIX = "mean_of_frames"


def programs() -> dict[str, list]:
    from benchmarks.four_apps import SPECS
    return {"nine": C.spec_paths(C.all_spec_names()), "four": [Path(s) for s in SPECS]}


def map_stats(paths) -> dict[str, list[str]]:
    """The maps of the merged program of ``paths`` that T2 updates, and the statistics each holds."""
    from compiler.driver import compile_files
    return {m["name"]: list(dict.fromkeys(f"{u['app']}.{u['stat']}" for u in m["uses"]))
            for m in compile_files([str(p) for p in paths]).manifest["maps"] if m["uses"]}


def _targets(nine_maps) -> dict[str, Rn.Target]:
    """The floor, every cut of both programs, the nine without each of ``nine_maps``, and
    the hand-written program, loaded and ready."""
    out: dict[str, Rn.Target] = {}
    try:
        out["floor"] = Rn.prepare("floor", C.Floor())
        for prog, paths in programs().items():
            for i, stage in enumerate(B.STAGES):
                name = f"{prog}/{B.cut_name(stage)}"
                p = C.XdpmonProgram(name, paths, c_edit=lambda c, s=stage: B.cut(c, s))
                t = Rn.prepare(name, p)
                t.check = B.StageCheck(name, p, i)
                out[name] = t
        nine = programs()["nine"]
        for m in nine_maps:
            name = f"nine/without:{m}"
            p = C.XdpmonProgram(name, nine, c_edit=lambda c, m=m: B.without_map(c, m))
            t = Rn.prepare(name, p)
            t.check = B.MapOffCheck(name, p, m)
            out[name] = t
        hand, why = C.load_external("handwritten")
        if hand is None:
            raise RuntimeError(f"bench_breakdown: the hand-written program is {why}")
        out["four/handwritten"] = Rn.prepare("four/handwritten", hand)
    except BaseException:
        for t in out.values():
            t.close()
        raise
    return out


def summarise(samples: Rn.Samples) -> dict:
    frames = list(samples.data)
    data = dict(samples.data)
    data[MIX] = {c: [sum(v) / len(v) for v in zip(*(data[f][c] for f in frames))] for c in data[frames[0]]}
    out = {}
    for prog in programs():
        cuts = [f"{prog}/{B.cut_name(s)}" for s in B.STAGES]
        rows = {}
        for f in frames + [MIX]:
            parts = B.stage_costs(data, f, "floor", cuts)
            row = {"stages": {s.name: stats.summary(v) for s, v in zip(B.STAGES, parts)},
                   "total": stats.summary(stats.paired(data[f][cuts[-1]], data[f]["floor"]))}
            if prog == "four":
                row["handwritten_total"] = stats.summary(stats.paired(data[f]["four/handwritten"], data[f]["floor"]))
            rows[f] = row
        out[prog] = rows
    full = f"nine/{B.cut_name(B.STAGES[-1])}"
    maps = {}
    for name in [c for c in data[frames[0]] if c.startswith("nine/without:")]:
        m = name.split(":", 1)[1]
        maps[m] = {f: stats.summary(stats.paired(data[f][full], data[f][name])) for f in frames + [MIX]}
    out["nine_maps"] = maps
    return out


def plot(result: dict, path: Path = OUT / "breakdown.png") -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [s.name for s in B.STAGES]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8))
    for ax, prog, title in zip(axes, ("nine", "four"), ("all nine specs merged", "the four reference apps merged")):
        rows = result["programs"][prog]
        frames = list(rows)
        bottom = [0.0] * len(frames)
        for n in names:
            h = [max(0.0, rows[f]["stages"][n]["median"]) for f in frames]
            ax.bar(range(len(frames)), h, 0.6, bottom=bottom, label=n)
            bottom = [b + x for b, x in zip(bottom, h)]
        ax.plot(range(len(frames)), [rows[f]["total"]["median"] for f in frames], "k_", markersize=22,
                label="whole program (median)")
        if prog == "four":
            ax.plot(range(len(frames)), [rows[f]["handwritten_total"]["median"] for f in frames], "rx",
                    markersize=9, label="hand-written, whole")
        tops = [rows[f]["total"]["median"] for f in frames if f != "tcp_syn_new_flow"]
        top = 1.25 * max(tops + [r["handwritten_total"]["median"] for r in rows.values() if "handwritten_total" in r])
        ax.set_ylim(0, top)
        for i, f in enumerate(frames):
            if rows[f]["total"]["median"] > top:
                ax.annotate(f"{rows[f]['total']['median']:.0f} ns (T2 {rows[f]['stages']['t2']['median']:.0f})",
                            (i, top * 0.93), ha="center", fontsize=8)
        ax.set_xticks(range(len(frames)), frames, rotation=25, ha="right", fontsize=8)
        ax.set(ylabel="ns/packet above the floor", title=f"Where the time goes: {title}")
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    names = [s.name for s in B.STAGES]
    lines = []
    for prog in ("nine", "four"):
        rows = result["programs"][prog]
        extra = " | hand-written" if prog == "four" else ""
        lines += [f"{prog}: | " + " | ".join(names) + " | whole" + extra, "| --- " * (len(names) + 2 + bool(extra)) + "|"]
        for f, r in rows.items():
            cells = [f"{r['stages'][n]['median']:.0f}" for n in names] + [f"{r['total']['median']:.0f}"]
            if prog == "four":
                cells.append(f"{r['handwritten_total']['median']:.0f}")
            lines.append(f"| {f} | " + " | ".join(cells) + " |")
        lines.append("")
    maps = result["programs"]["nine_maps"]
    if maps:
        frames = list(next(iter(maps.values())))
        lines += ["nine, T2 by map (the whole program minus the program without that map's update): | "
                  + " | ".join(frames), "| --- " * (len(frames) + 1) + "|"]
        for m, by in maps.items():
            lines.append(f"| {m} ({', '.join(result['map_stats'][m])}) | "
                         + " | ".join(f"{by[f]['median']:.0f}" for f in frames) + " |")
    return "\n".join(lines)


def main() -> dict:
    if os.geteuid() != 0:
        print("bench_breakdown: needs root and BPF; skipped")
        return {"skipped": "needs root"}
    cpu = Rn.pin_cpu()
    nine_maps = map_stats(programs()["nine"])
    targets = _targets(nine_maps)
    try:
        t0 = time.time()
        samples = Rn.measure(list(targets.values()), F.benchmark_frames(), None, ROUNDS, REPEAT)
        elapsed = time.time() - t0
    finally:
        for t in targets.values():
            t.close()
    result = {"rounds": ROUNDS, "repeat": REPEAT, "cpu": cpu, "seconds": round(elapsed, 1),
              "map_stats": nine_maps,
              "stages": {s.name: s.about for s in B.STAGES}, "programs": summarise(samples),
              "raw_ns": samples.data}
    OUT.mkdir(exist_ok=True)
    (OUT / "breakdown.json").write_text(json.dumps(result, indent=1) + "\n")
    png = plot(result)
    text = markdown(result)
    print(f"ns per packet above the floor, by stage (median of {ROUNDS} interleaved rounds x {REPEAT}, CPU {cpu}):")
    print(text)
    return {"json": str(OUT / "breakdown.json"), "png": str(png) if png else "matplotlib missing"}


if __name__ == "__main__":
    main()
