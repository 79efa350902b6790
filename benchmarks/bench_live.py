"""The paper's live experiments on a veth pair between two namespaces: the receiving
CPU's work at fixed offered loads, and the highest loss-free rate, for each program
of benchmarks/live_configs.py (the floor, xdpmon merged of all nine specs/ with
verdict PASS and with verdict DROP) attached in native mode on the monitor side.

Frames come from the live-frames generator (runtime/traffic), pinned to CPU 0; the
receiver's NAPI is threaded and pinned to CPU 1 (benchmarks/live_rig.py says why).
Every trial checks what it measures: frames sent (the generator program's count)
against frames seen (the attached program's run count) and the veth's drops, which
must add up: sent == seen + dropped.

1. Fixed loads (``LOADS``): ``ROUNDS`` rounds, each offering every load to every
   configuration, the configurations in a rotated order each round (interleaved);
   per trial the receiver's NAPI threads' CPU share, their time per frame, the
   program's own time per frame (bpf stats) and the CPU's sys+irq+softirq share.
2. Highest loss-free rate: per configuration and round, a bisection (on a log scale,
   ``STEPS`` trials) between ``LOW`` and ``HIGH`` frames/s; a trial is loss-free when
   seen == sent; a rate fails when ``TRIES`` trials at it all fail (the machine is
   shared: other users' work stalls the receiver now and then, and a single stall
   must not end the search; a rate the receiver cannot handle fails every time). A rate the
   generator did not reach (achieved < 95 %) counts as a failure too: the result is
   then the generator's limit, and says so. The same search with 0.5 % loss
   allowed (a partial drop rate), which on this shared VM says more about the
   receiver's capacity than the no-loss rate (see the README).
3. Queues: the veth with 2 receive queues (numrxqueues 2). With one generator
   (CPU 0) every frame goes to one queue: a veth picks the receive queue by the
   number of the sending CPU. So the two-queue run has two generator threads, one
   per CPU, and the NAPI thread of each queue on the other CPU: with 2 cores, every
   core then both sends and receives. The loss-free search for the DROP
   configurations, 1 queue (the setup of 1. and 2.) against 2.

Ratios are against the floor of the same verdict, per round (the same round's
trials), median and range over the rounds. Results: benchmarks/results/live.json,
live_cpu.png, live_lossfree.png. Needs root, BPF and 2 CPUs; run under the timing
lock: ``flock /tmp/xdpmon-timing.lock python benchmarks/bench_live.py``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.live_configs import CONFIGS, FLOOR  # noqa: E402
from benchmarks.live_rig import CHUNK, Rig, enable_bpf_stats  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LOADS = [int(x) for x in os.environ.get("XDPMON_LIVE_LOADS", "200000,500000,1000000").split(",")]
ROUNDS = int(os.environ.get("XDPMON_LIVE_ROUNDS", "3"))
SEARCH_ROUNDS = max(1, ROUNDS - 1)    # the searches take longer: one round fewer
QUEUE_ROUNDS = 1
TRIES = 3                             # trials at one rate before it counts as failed
TRIAL_S = float(os.environ.get("XDPMON_LIVE_TRIAL_S", "0.25"))
LOW, HIGH, STEPS = 50_000, 4_000_000, 6
TOLERANCES = [0.0, 0.005]     # no loss (NDR), and at most 0.5 % lost (a partial drop rate, PDR)
REACHED = 0.95


def _check(t) -> None:
    if t.seen + t.dropped != t.sent:
        # frames neither seen nor counted dropped: the meters do not add up (or another
        # sender used the interface); never report such a trial
        raise RuntimeError(f"{t.config} at {t.target_pps:.0f}/s: sent {t.sent}, seen {t.seen}, dropped {t.dropped}: "
                           f"{t.sent - t.seen - t.dropped} frames unaccounted for")


def spread(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


class Programs:
    """Every configuration's program, loaded once; attach() swaps which one runs."""

    def __init__(self, configs):
        self.loaded = {}
        try:
            for c in configs:
                self.loaded[c.name] = c.load()
        except BaseException:
            self.close()
            raise

    def close(self):
        for x in self.loaded.values():
            x.close()
        self.loaded = {}


def _with(rig, progs, name, fn):
    p = progs.loaded[name]
    rig.attach(p.fd)
    try:
        f0 = p.frames()
        out = fn(p)
        f1 = p.frames()
        return out, (None if f0 is None else f1 - f0)
    finally:
        rig.detach()


def fixed_loads(rig, progs, configs) -> list[dict]:
    trials = []
    for r in range(ROUNDS):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            def run(p, c=c):
                return [rig.trial(c.name, p.fd, load, TRIAL_S) for load in LOADS]
            ts, counted = _with(rig, progs, c.name, run)
            for t in ts:
                _check(t)
            if counted is not None and counted != sum(t.seen for t in ts):
                raise RuntimeError(f"{c.name}: xdpmon counted {counted} frames, bpf stats {sum(t.seen for t in ts)}")
            trials += [dict(t.to_json(), round=r) for t in ts]
    return trials


def _search(rig, p, name, gen_cpus=None, tolerance: float = 0.0) -> dict:
    """Bisection for the highest rate whose loss is at most ``tolerance`` of the frames
    sent (0: none lost)."""
    lo, hi, log = LOW, HIGH, []
    best, hi_why = None, "upper bound of the search"
    for _ in range(STEPS):
        mid = math.sqrt(lo * hi)
        tries = []
        for _attempt in range(TRIES):
            t = rig.trial(name, p.fd, mid, TRIAL_S, gen_cpus)
            _check(t)
            tries.append(t)
            if _outcome(t, mid, tolerance) == "ok":
                break
        t = tries[-1]
        ok = _outcome(t, mid, tolerance) == "ok"
        log += [{"target": mid, "achieved": x.rate_pps, "sent": x.sent, "seen": x.seen, "dropped": x.dropped,
                 "outcome": _outcome(x, mid, tolerance)} for x in tries]
        if ok:
            lo, best = mid, t
        else:
            hi, hi_why = mid, _outcome(t, mid, tolerance)
    return {"config": name, "tolerance": tolerance, "loss_free_pps": best.rate_pps if best else None,
            "bracket": [lo, hi],
            "limit": hi_why, "generator_bound": hi_why == "not reached", "trials": log,
            "napi_ns_per_frame": best.napi_ns_per_frame if best else None,
            "prog_ns": best.prog_ns if best else None}


def _outcome(t, target: float, tolerance: float = 0.0) -> str:
    if t.sent - t.seen > tolerance * t.sent:
        return "loss"
    return "ok" if t.rate_pps >= REACHED * target else "not reached"


def loss_free(rig, progs, configs) -> list[dict]:
    out = []
    for r in range(SEARCH_ROUNDS):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            for tol in TOLERANCES:
                res, _ = _with(rig, progs, c.name, lambda p, c=c, tol=tol: _search(rig, p, c.name, None, tol))
                out.append(dict(res, round=r))
    return out


QUEUE_SETUPS = [
    # name, receive queues, the NAPI threads' CPUs (queue i: rx_cpus[i]), the generator's CPUs
    ("1 queue, generator on CPU 0, NAPI on CPU 1", 1, (1,), None),
    ("2 queues, generators on CPUs 0 and 1, NAPI of queue 0 on CPU 1, of queue 1 on CPU 0", 2, (1, 0), (0, 1)),
]


def queue_rates(progs, configs) -> list[dict]:
    """The loss-free search with 1 and with 2 receive queues, the DROP configurations."""
    out = []
    for r in range(QUEUE_ROUNDS):
        for name, nq, rx_cpus, gen_cpus in QUEUE_SETUPS:
            rig = Rig(queues=nq, gen_cpu=0, rx_cpus=rx_cpus)
            try:
                for c in configs:
                    if c.verdict == "DROP":
                        for tol in TOLERANCES:
                            res, _ = _with(rig, progs, c.name,
                                           lambda p, c=c, tol=tol: _search(rig, p, c.name, gen_cpus, tol))
                            out.append(dict(res, setup=name, round=r))
            finally:
                rig.close()
    return out


def queues(progs, configs) -> list[dict]:
    """2 receive queues, both NAPI threads on CPU 1, one generator on CPU 0: which
    queue does the work."""
    rig = Rig(queues=2, gen_cpu=0, rx_cpus=(1,))
    out = []
    try:
        for c in configs:
            if c.verdict != "DROP":
                continue
            ts, _ = _with(rig, progs, c.name, lambda p, c=c: [rig.trial(c.name, p.fd, 500_000, TRIAL_S)
                                                               for _ in range(ROUNDS)])
            for t in ts:
                _check(t)
                out.append({"config": c.name, "target_pps": t.target_pps, "sent": t.sent, "seen": t.seen,
                            "per_queue_busy": t.per_queue_busy, "napi_ns_per_frame": t.napi_ns_per_frame})
    finally:
        rig.close()
    return out


def summarise(fixed, lossfree, configs) -> dict:
    verdict = {c.name: c.verdict for c in configs}
    cpu = {}
    for c in configs:
        for load in LOADS:
            rows = [t for t in fixed if t["config"] == c.name and t["target_pps"] == load]
            ratios = []
            for t in rows:
                floor = next(f for f in fixed if f["config"] == FLOOR[c.verdict] and f["round"] == t["round"]
                             and f["target_pps"] == load)
                if floor["napi_busy"] > 0:
                    ratios.append(t["napi_busy"] / floor["napi_busy"])
            cpu.setdefault(c.name, {})[str(load)] = {
                "achieved_pps": spread([t["rate_pps"] for t in rows]),
                "loss": spread([(t["sent"] - t["seen"]) / t["sent"] for t in rows]),
                "napi_cpu": spread([t["napi_busy"] for t in rows]),
                "cpu_sys_softirq": spread([t["cpu_busy"] for t in rows]),
                "napi_ns_per_frame": spread([t["napi_ns_per_frame"] for t in rows]),
                "prog_ns_per_frame": spread([t["prog_ns"] for t in rows]),
                "napi_cpu_vs_floor": spread(ratios) if ratios else None,
                # derived, not measured: the rate at which the NAPI thread would use the whole CPU
                "cpu_bound_pps": spread([1e9 / t["napi_ns_per_frame"] for t in rows if t["napi_ns_per_frame"]]),
            }
    lf = {}
    for tol in TOLERANCES:
        key = "no loss" if tol == 0 else f"loss <= {100 * tol:g} %"
        for c in configs:
            rows = [x for x in lossfree if x["config"] == c.name and x["tolerance"] == tol]
            rates = [x["loss_free_pps"] or 0.0 for x in rows]
            ratios = []
            for x in rows:
                f = next(y for y in lossfree if y["config"] == FLOOR[c.verdict] and y["round"] == x["round"]
                         and y["tolerance"] == tol)
                if f["loss_free_pps"] and x["loss_free_pps"]:
                    ratios.append(x["loss_free_pps"] / f["loss_free_pps"])
            lf.setdefault(key, {})[c.name] = {
                "verdict": verdict[c.name], "rate_pps": spread(rates), "vs_floor": spread(ratios) if ratios else None,
                "generator_bound_rounds": sum(x["generator_bound"] for x in rows)}
    return {"cpu_at_fixed_load": cpu, "highest_rate": lf}


def _grouped_bars(plt, path: Path, groups: list[str], series: dict[str, list[dict]], scale: float,
                  ylabel: str, title: str, capsize: int) -> None:
    """One bar per series in each group: its median, with a min-max error bar (values
    ``{"median", "min", "max"}`` times ``scale``), saved to ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4))
    w = 0.8 / len(series)
    for i, (label, spreads) in enumerate(series.items()):
        med = [scale * v["median"] for v in spreads]
        lo = [m - scale * v["min"] for m, v in zip(med, spreads)]
        hi = [scale * v["max"] - m for m, v in zip(med, spreads)]
        ax.bar([j + i * w for j in range(len(groups))], med, w, yerr=[lo, hi], capsize=capsize, label=label)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(summary, configs, path_cpu: Path, path_lf: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = summary["cpu_at_fixed_load"]
    _grouped_bars(plt, path_cpu, [f"{x / 1e3:.0f} kpps" for x in LOADS],
                  {c.name: [cpu[c.name][str(x)]["napi_cpu"] for x in LOADS] for c in configs}, 100,
                  "receiving CPU busy (NAPI thread), % of a core",
                  "Receiver CPU at fixed offered load (median, min-max)", 3)
    names = [c.name for c in configs]
    rates = summary["highest_rate"]
    _grouped_bars(plt, path_lf, names, {kind: [rates[kind][n]["rate_pps"] for n in names] for kind in rates},
                  1e-3, "highest rate, kpps", "Highest rate with no loss / loss <= 0.5 % (median, min-max)", 4)


def main() -> dict:
    if os.cpu_count() < 2:
        raise RuntimeError("the live benchmark needs 2 CPUs (one sends, one receives)")
    from runtime.traffic import xdp_live
    why = xdp_live.refusal()
    if why:                    # the transmit ring is not fast enough to find loss-free rates
        print(f"live: skipped: {why}; the results of benchmarks/results/live.json are from a kernel that ran them")
        return {"skipped": why}
    t0 = time.monotonic()
    configs = list(CONFIGS)
    stats_fd = enable_bpf_stats()
    progs = rig = None
    try:
        progs = Programs(configs)
        rig = Rig(queues=1, gen_cpu=0, rx_cpus=(1,))
        fixed = fixed_loads(rig, progs, configs)
        lossfree = loss_free(rig, progs, configs)
        rig.close()
        rig = None
        q = queues(progs, configs)
        qr = queue_rates(progs, configs)
    finally:
        if rig is not None:
            rig.close()
        if progs is not None:
            progs.close()
        os.close(stats_fd)                    # bpf stats off again
    summary = summarise(fixed, lossfree, configs)
    out = {
        "setup": {"kernel": os.uname().release, "cpus": os.cpu_count(), "generator_cpu": 0, "receiver_cpu": 1,
                  "search_rounds": SEARCH_ROUNDS, "queue_rounds": QUEUE_ROUNDS, "tries_per_rate": TRIES,
                  "tolerances": TOLERANCES,
                  "frames": "UDP, 60 bytes, 1024 sources in turn, to the monitor's address",
                  "chunk_frames_per_call": CHUNK, "batch": 64, "trial_s": TRIAL_S, "rounds": ROUNDS,
                  "loads_pps": LOADS, "search": {"low": LOW, "high": HIGH, "steps": STEPS},
                  "configs": [{"name": c.name, "verdict": c.verdict} for c in configs],
                  "elapsed_s": round(time.monotonic() - t0, 1)},
        "summary": summary,
        "queues": {"one_generator": q, "loss_free": qr, "loss_free_summary": {
            f"{setup} / {c.name} / {'no loss' if tol == 0 else f'loss <= {100 * tol:g} %'}": spread(
                [x["loss_free_pps"] or 0.0 for x in qr
                 if x["setup"] == setup and x["config"] == c.name and x["tolerance"] == tol])
            for setup, *_ in QUEUE_SETUPS for c in configs if c.verdict == "DROP" for tol in TOLERANCES}},
        "trials": {"fixed": fixed, "loss_free": lossfree},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "live.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(summary, configs, RESULTS / "live_cpu.png", RESULTS / "live_lossfree.png")
    res = {}
    for c in configs:
        for kind, rows in summary["highest_rate"].items():
            s = rows[c.name]
            v = s["vs_floor"]
            res[f"highest rate, {kind}, {c.name} (kpps, median [min-max])"] = (
                f"{s['rate_pps']['median'] / 1e3:.0f} [{s['rate_pps']['min'] / 1e3:.0f}-"
                f"{s['rate_pps']['max'] / 1e3:.0f}]" + (f", x{v['median']:.2f} of the floor" if v else "")
                + (f" (generator-bound in {s['generator_bound_rounds']} rounds)" if s["generator_bound_rounds"] else ""))
        for load in LOADS:
            x = summary["cpu_at_fixed_load"][c.name][str(load)]
            r = x["napi_cpu_vs_floor"]
            res[f"{c.name} at {load / 1e3:.0f} kpps: achieved kpps, loss %, receiver CPU %, ns/frame (napi, prog)"] = (
                f"{x['achieved_pps']['median'] / 1e3:.0f}, {100 * x['loss']['median']:.1f}, "
                f"{100 * x['napi_cpu']['median']:.1f} [{100 * x['napi_cpu']['min']:.1f}-"
                f"{100 * x['napi_cpu']['max']:.1f}], {x['napi_ns_per_frame']['median']:.0f}, "
                f"{x['prog_ns_per_frame']['median']:.0f}" + (f", x{r['median']:.2f} of the floor" if r else ""))
    for x in q:
        res.setdefault(f"2 queues, 1 generator: {x['config']} per-queue NAPI CPU %", []).append(
            "/".join(f"{100 * b:.1f}" for b in x["per_queue_busy"]))
    for k, v in out["queues"]["loss_free_summary"].items():
        res[f"highest rate, {k} (kpps)"] = f"{v['median'] / 1e3:.0f} [{v['min'] / 1e3:.0f}-{v['max'] / 1e3:.0f}]"
    res["elapsed"] = f"{out['setup']['elapsed_s']} s"
    return res


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
