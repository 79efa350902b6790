"""How the merged program grows with the number of apps: instructions the
verifier processed, instructions after verification, stages, and the time to
compile (xdpmon: specs to C) and to load (BCC: C to BPF, then the verifier), for
1 to 256 generated apps of mixed kinds (benchmarks/specgen.py: keyed counts,
windows, sums, min/max, histograms, distinct, rules that send and enable).

Each size is loaded ``REPEATS`` times, the sizes interleaved (1, 2, ..., 256,
then again), so a disturbance of the machine hits every size alike; times are
medians with the min-max spread. The instruction counts are the kernel's own
(bpf_prog_info.verified_insns, summed over the stages) and do not vary between
repeats -- the benchmark checks that. Needs root and BPF. Writes
benchmarks/results/scale.png and scale.json.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from benchmarks.specgen import generate

SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 192, 256]
REPEATS = 3
OUT = Path(__file__).resolve().parent / "results"


def measure(n: int) -> dict:
    import tempfile

    from compiler.driver import compile_files
    from runtime.dataplane.loader import load

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "apps.mon"
        path.write_text(generate(n))
        t0 = time.perf_counter()
        art = compile_files([str(path)])
        t1 = time.perf_counter()
        loaded = load(art.c, stages=art.manifest["stages"])
        t2 = time.perf_counter()
        row = {"apps": n, "stages": len(loaded.stages), "verified_insns": loaded.verified_insns,
               "xlated_insns": sum(s.xlated_insns for s in loaded.stages),
               "maps": len(art.plan.kernel_maps()), "compile_s": t1 - t0, "load_s": t2 - t1}
        loaded.close()
    return row


def run() -> list[dict]:
    rows: dict[int, list[dict]] = {n: [] for n in SIZES}
    for _ in range(REPEATS):
        for n in SIZES:
            rows[n].append(measure(n))
    out = []
    for n, rs in rows.items():
        insns = {r["verified_insns"] for r in rs}
        assert len(insns) == 1, f"{n} apps: the verifier's count varied between loads: {insns}"
        loads = sorted(r["load_s"] for r in rs)
        comps = sorted(r["compile_s"] for r in rs)
        out.append({**{k: rs[0][k] for k in ("apps", "stages", "verified_insns", "xlated_insns", "maps")},
                    "load_s": statistics.median(loads), "load_spread_s": [loads[0], loads[-1]],
                    "compile_s": statistics.median(comps), "compile_spread_s": [comps[0], comps[-1]]})
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apps = [r["apps"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(apps, [r["verified_insns"] / 1000 for r in rows], "o-", label="processed by the verifier")
    a.plot(apps, [r["xlated_insns"] / 1000 for r in rows], "s-", label="in the loaded program(s)")
    for r in rows:
        if r["stages"] > 1:
            a.annotate(f"{r['stages']} stages", (r["apps"], r["verified_insns"] / 1000), fontsize=8,
                       textcoords="offset points", xytext=(-30, 8))
    a.set(xlabel="apps merged", ylabel="thousand instructions", title="Verifier work")
    a.legend()
    lo = [r["load_s"] - r["load_spread_s"][0] for r in rows]
    hi = [r["load_spread_s"][1] - r["load_s"] for r in rows]
    b.errorbar(apps, [r["load_s"] for r in rows], yerr=[lo, hi], fmt="o-", capsize=3,
               label="load (clang + verifier)")
    b.plot(apps, [r["compile_s"] for r in rows], "s-", label="xdpmon compile")
    b.set(xlabel="apps merged", ylabel="seconds (median, min-max)", title="Time")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    rows = run()
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, OUT / "scale.png")
    return {f"{r['apps']:>3} apps": (f"{r['stages']} stage(s), {r['verified_insns']:>7} verified, "
                                      f"{r['xlated_insns']:>6} loaded, {r['maps']:>2} maps, "
                                      f"compile {r['compile_s']:.2f} s, load {r['load_s']:.2f} s "
                                      f"[{r['load_spread_s'][0]:.2f}-{r['load_spread_s'][1]:.2f}]")
            for r in rows}


if __name__ == "__main__":
    from benchmarks.__main__ import print_results
    print_results(main())
