"""The benchmark's results as files: merge.json (everything), merge.md (the
tables), and PNG plots (matplotlib, from the venv's ``bench`` extra) under
benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "results"


def _q(s: dict | None, unit: str = "", digits: int = 1) -> str:
    if s is None:
        return "n/a"
    return f"{s['median']:.{digits}f}{unit} [{s['q1']:.{digits}f}, {s['q3']:.{digits}f}]"


def _r(s: dict | None) -> str:
    """A ratio, two decimals."""
    return _q(s, digits=2)


def write_json(result: dict, path: Path = OUT / "merge.json") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def markdown(result: dict) -> str:
    """The tables of merge.md: costs per frame, ratios, scaling, targets."""
    out = ["# bench_merge: ns per packet above the floor", "",
           f"Kernel {result['kernel']}, CPU {result['cpu']}, repeat {result['repeat']}, "
           f"{result['rounds']} interleaved rounds; medians over rounds with [first, third quartile] of "
           "the per-round paired difference from the floor (ns) or of the per-round ratio.", ""]
    suite = result.get("suite")
    if suite:
        main = [c for c in suite["columns"] if not c.startswith("alone:")]
        alone = [c for c in suite["columns"] if c.startswith("alone:")]
        for title, cols in (("Costs above the floor per frame (ns/packet)", main),
                            ("Each app alone, above the floor (ns/packet)", alone)):
            out += [f"## {title}", "",
                    "| frame | floor (absolute) | " + " | ".join(c.removeprefix("alone:") for c in cols) + " |",
                    "|---|---|" + "---|" * len(cols)]
            for row in suite["frames"]:
                cells = [_q(row["costs"].get(c)) for c in cols]
                out.append(f"| {row['frame']} | {_q(row['floor'])} | " + " | ".join(cells) + " |")
            out.append("")
        out += ["## Ratios (per round, median [quartiles])", "",
                "| frame | merged / separate (9) | reference4 / separate (4) | on-demand off: merged_on_demand_off - merged_without_syn_flood (ns) |",
                "|---|---|---|---|"]
        for row in suite["frames"]:
            out.append(f"| {row['frame']} | {_r(row['ratios'].get('merged/separate9'))} | "
                       f"{_r(row['ratios'].get('reference4/separate4'))} | {_q(row['costs'].get('disabled_app_ns'))} |")
        ext = suite.get("external", {})
        if ext:
            out += ["", "Plugged-in configurations: " + "; ".join(f"{k}: {v}" for k, v in ext.items())]
        eq = suite.get("equivalence")
        if eq:
            bad = [p for p in eq["pairs"] if p["differences"]]
            out += ["", f"Equivalence (same statistics): {'all the same' if eq['same'] else 'DIFFERENT' if eq['same'] is False else 'not compared'} "
                    f"over {len(eq['pairs'])} app comparisons (pass of {eq['pass_ms']} ms, repeat {eq['repeat']})."]
            for p in bad:
                out.append(f"- {p['app']}: {p['a']} vs {p['b']}: {p['differences'][:3]}")
    scale = result.get("scaling")
    if scale:
        out += ["", "## Scaling: ns/packet above the floor (TCP established frame) and verified instructions", "",
                "| overlap | apps | merged ns | separate ns | merged / separate | merged insns | separate insns |",
                "|---|---|---|---|---|---|---|"]
        for r in scale["rows"]:
            out.append(f"| {r['overlap']} | {r['apps']} | {_q(r['merged'])} | {_q(r['separate'])} | "
                       f"{_r(r['ratio'])} | {r['merged_insns']} | {r['separate_insns']} |")
        o = scale.get("of8")
        if o:
            out += ["", f"32 apps holding 8 statistics: {_q(o['merged32'])} ns vs the 8 apps: {_q(o['merged8'])} ns; "
                    f"ratio {_r(o['ratio'])}"]
    od = result.get("ondemand")
    if od:
        out += ["", f"## A disabled on-demand app ({od['rounds']} rounds, 3 programs)", "",
                "| frame | merged, syn_flood off | merged without syn_flood | difference (ns) |", "|---|---|---|---|"]
        for r in od["rows"]:
            out.append(f"| {r['frame']} | {_q(r['merged_on_demand_off'])} | {_q(r['merged_without_syn_flood'])} | "
                       f"{_q(r['disabled_app_ns'])} |")
        out.append(f"| mean of the frames | | | {_q(od['mean'])} |")
    out += ["", "## Targets of the issue", "", "| target | limit | measured (median [quartiles]) | met |", "|---|---|---|---|"]
    for t in result.get("targets", []):
        m = "n/a" if t["median"] is None else f"{t['median']:.2f} [{t['q1']:.2f}, {t['q3']:.2f}] {t['unit']}"
        met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        out.append(f"| {t['what']} | {t['limit']} {t['unit']} | {m} | {met} |")
    return "\n".join(out) + "\n"


def write_markdown(result: dict, path: Path = OUT / "merge.md") -> Path:
    path.write_text(markdown(result))
    return path


def plot_scaling(scale: dict, path: Path = OUT / "merge_scaling.png") -> Path | None:
    """ns/packet against apps, merged vs separate, one panel per overlap; and the
    verified instructions."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    overlaps = scale["overlaps"]
    fig, axes = plt.subplots(1, len(overlaps) + 1, figsize=(4.2 * (len(overlaps) + 1), 3.8))
    for ax, ov in zip(axes, overlaps):
        rows = [r for r in scale["rows"] if r["overlap"] == ov]
        n = [r["apps"] for r in rows]
        for key, style, label in (("merged", "o-", "merged"), ("separate", "s--", "separate (sum)")):
            med = [r[key]["median"] for r in rows]
            lo = [r[key]["median"] - r[key]["q1"] for r in rows]
            hi = [r[key]["q3"] - r[key]["median"] for r in rows]
            ax.errorbar(n, med, yerr=[lo, hi], fmt=style, capsize=3, label=label)
        ax.set(xscale="log", yscale="log", xlabel="apps", ylabel="ns/packet above the floor", title=f"{ov}")
        ax.set_xticks(n, [str(x) for x in n])
        ax.legend(fontsize=8)
    ax = axes[-1]
    for ov in overlaps:
        rows = [r for r in scale["rows"] if r["overlap"] == ov]
        ax.plot([r["apps"] for r in rows], [r["merged_insns"] for r in rows], "o-", label=f"{ov} merged")
        ax.plot([r["apps"] for r in rows], [r["separate_insns"] for r in rows], "s--", label=f"{ov} separate")
    ax.set(xscale="log", yscale="log", xlabel="apps", ylabel="verified instructions", title="verifier")
    n = [r["apps"] for r in scale["rows"] if r["overlap"] == overlaps[0]]
    ax.set_xticks(n, [str(x) for x in n])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_frames(suite: dict, path: Path = OUT / "merge_frames.png") -> Path | None:
    """Merged, separate and reference4 costs per frame (bars: medians, whiskers: quartiles)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = suite["frames"]
    cols = [c for c in ("merged", "separate9", "merged_on_demand_off", "reference4", "separate4")
            if all(c in r["costs"] for r in rows)]
    fig, ax = plt.subplots(figsize=(12, 4))
    w = 0.8 / len(cols)
    for j, c in enumerate(cols):
        med = [r["costs"][c]["median"] for r in rows]
        lo = [r["costs"][c]["median"] - r["costs"][c]["q1"] for r in rows]
        hi = [r["costs"][c]["q3"] - r["costs"][c]["median"] for r in rows]
        ax.bar([i + j * w for i in range(len(rows))], med, w, yerr=[lo, hi], capsize=2, label=c)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(rows))], [r["frame"] for r in rows], rotation=30, ha="right",
                  fontsize=8)
    ax.set(ylabel="ns/packet above the floor")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
