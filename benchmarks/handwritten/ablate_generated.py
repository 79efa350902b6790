"""Where xdpmon's merged program of the four apps spends more than the hand-written one:
each variant of the generated C leaves out (or cheapens) one thing the hand-written
program does not do, and the time it saves is measured beside the unchanged program.

An analysis aid for the compiler's authors, not a configuration of the benchmark: a
variant computes something else (no interface counters, no rule, ...), so nothing here
is checked against the statistics. Each edit is an exact text replacement in today's
generated C; one that no longer matches is reported and left out.

    flock /tmp/xdpmon-timing.lock .venv/bin/python -m benchmarks.handwritten.ablate_generated

Writes benchmarks/results/handwritten_ablation.json. Needs root and BPF.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPEAT = int(os.environ.get("XDPMON_BENCH_REPEAT", "20000"))
ROUNDS = int(os.environ.get("XDPMON_BENCH_ROUNDS", "15"))
RESULTS = ROOT / "benchmarks" / "results" / "handwritten_ablation.json"

_HLL_KEY = (r"        struct xm_h_s_c2fa9d hk;\n        __builtin_memset\(&hk, 0, sizeof\(hk\)\);\n"
            r"        __builtin_memcpy\(hk\.ip_dst, p->dst\.b, 16\);\n        __builtin_memcpy\(hk\.ip_src, p->src\.b, 16\);\n"
            r"        hk\.l4_dport = p->dport;\n        hk\.l4_sport = p->sport;\n"
            r"        __u64 h = xm_hash\(\(__u64 \*\)&hk, 5, 0\);")
_HLL_WORDS = ("        __u64 hw[5];\n"
              "        hw[0] = ((__u64 *)p->dst.b)[0]; hw[1] = ((__u64 *)p->dst.b)[1];\n"
              "        hw[2] = ((__u64 *)p->src.b)[0]; hw[3] = ((__u64 *)p->src.b)[1];\n"
              "        hw[4] = (__u64)p->dport | ((__u64)p->sport << 16);\n"
              "        __u64 h = xm_hash(hw, 5, 0);")

# name -> (what it leaves out, [(regex, replacement)])
# name -> (what it leaves out, [(regex, replacement)])
VARIANTS = {
    "no_iface_gate": ("the per-interface count's gate (a test of the filter state per frame; the count itself "
                      "runs only while interfaces are counted)",
                      [(r"\n    if \(flt && flt->n_ifaces\)\n        xm_count_iface\(ctx, p\);[^\n]*", "")]),
    "no_outcome_count": ("the parse-outcome counter, the one global count a frame (a per-CPU array update)",
                         [(r"\n    xm_count\(1 \+ \(outcome & 31\)\);[^\n]*", "")]),
    "no_blocklist_gate": ("the blocklist gate (a test of the filter state per frame)",
                          [(r"\n    if \(flt && flt->entries[^\n]*\n        return XDP_DROP;", "")]),
    "no_epoch_division": ("the window's 64-bit division per frame (now / 1 s): a shift instead",
                          [(r"now / 1000000000ULL \+ 1;", "(now >> 30) + 1;")]),
    "no_atomics": ("atomic adds of shared statistics: plain adds",
                   [(r"__sync_fetch_and_add\(&(v->s_\w+), ([^;]+)\);", r"\1 += \2;")]),
    "no_hll_estimate": ("flow_watch's estimate recomputed when a register grows (a division, a 16-step log loop)",
                        [(r"\n                hd->est = xm_hll_estimate\(hd->z, hd->zeros, [^;]+;", "")]),
    "hll_hash_from_fields": ("flow_watch's hash input built in a zeroed stack struct by memset and memcpy: the "
                             "words loaded from the parsed packet instead",
                             [(_HLL_KEY, lambda m: _HLL_WORDS)]),
    "predicates_on_stack": ("the predicates P[] in the per-CPU scratch map: on the stack instead",
                            [(r"__u8 \*P = s->p;", "__u8 Pa[16]; __u8 *P = Pa;"),
                             (r"xm_zero_words\(s->p, sizeof\(s->p\)\);", "xm_zero_words(Pa, 16);")]),
    "no_enable_refresh": ("the on-demand enable mask refreshed from the control block per frame (an array "
                          "lookup, a test of the clock): syn_flood's bit set instead",
                          [(r"\n    xm_enabled\(ctl, s, now\);", "\n    s->en = 1;")]),
    "no_predicate_zeroing": ("zeroing the per-packet predicate array P[] in the scratch",
                             [(r"\n    xm_zero_words\(s->p, sizeof\(s->p\)\);[^\n]*", "")]),
    "no_parse_struct_zeroing": ("zeroing the whole parsed-packet struct before parsing (the parser then "
                                "writes what it reads)",
                                [(r"__builtin_memset\(p, 0, sizeof\(\*p\)\);", "p->layers = 0; p->src.w[0] = 0; "
                                  "p->src.w[1] = 0; p->dst.w[0] = 0; p->dst.w[1] = 0;")]),
}


def variant_c(c: str, edits) -> str | None:
    for pattern, repl in edits:
        c, n = re.subn(pattern, repl, c)
        if n == 0:
            return None
    return c


def main() -> dict:
    if os.geteuid() != 0:
        print("ablation: needs root; skipped")
        return {"skipped": "needs root"}
    from benchmarks.four_app_frames import bench_frames
    from benchmarks.four_apps import SPECS, U64_MAX, FloorProgram
    from compiler.driver import compile_files
    from runtime.dataplane.bpf_test_run import TestRunner
    from runtime.dataplane.loader import LoadError, load
    from runtime.dataplane.maps import ProgramMaps

    cpu = int(os.environ.get("XDPMON_BENCH_CPU", max(os.sched_getaffinity(0))))
    os.sched_setaffinity(0, {cpu})
    art = compile_files(list(SPECS))
    sources = {"generated": art.c}
    skipped = []
    for name, (_, edits) in VARIANTS.items():
        c = variant_c(art.c, edits)
        if c is None:
            skipped.append(name)
        else:
            sources[name] = c
    sources["all_of_them"] = art.c
    for name in sources:
        if name not in ("generated", "all_of_them"):
            both = variant_c(sources["all_of_them"], VARIANTS[name][1])
            if both is None:                 # an earlier variant's edit took its place
                skipped.append(f"{name} (in all_of_them: overlaps an earlier variant)")
            else:
                sources["all_of_them"] = both
    floor = FloorProgram()
    progs = {}
    try:
        for name, c in sources.items():
            try:
                loaded = load(c)
            except LoadError as e:           # the verifier may refuse a variant (e.g. unzeroed stack)
                skipped.append(f"{name} ({e.reason})")
                continue
            progs[name] = loaded
            maps = ProgramMaps(loaded.bpf, art.manifest)
            maps.init()
            maps.set_enabled("syn_flood", U64_MAX)
            maps.set_param("syn_flood", "per_dst", U64_MAX)
        runners = {"floor": TestRunner(floor.fd, want_data_out=False)}
        runners.update({n: TestRunner(p.fd, want_data_out=False) for n, p in progs.items()})
        frames = bench_frames()
        samples = {w: {n: [] for n in runners} for w in frames}
        order = list(runners)
        for rnd in range(ROUNDS + 1):
            for what, f in frames.items():
                for n in order[rnd % len(order):] + order[:rnd % len(order)]:
                    res = runners[n].run(f, repeat=REPEAT)
                    assert res.retval == 2
                    if rnd:
                        samples[what][n].append(res.duration_ns)
    finally:
        floor.close()
        for p in progs.values():
            p.close()
    saved = {}
    for what, by in samples.items():
        saved[what] = {"generated_above_floor_ns": statistics.median(
            [g - f for g, f in zip(by["generated"], by["floor"])])}
        for n in runners:
            if n in ("floor", "generated"):
                continue
            saved[what][n] = statistics.median([g - v for g, v in zip(by["generated"], by[n])])
    out = {"repeat": REPEAT, "rounds": ROUNDS, "cpu": cpu, "skipped": skipped,
           "variants": {n: VARIANTS[n][0] for n in sources if n in VARIANTS},
           "saved_ns_median_paired": saved, "raw_ns": samples}
    print(f"ns the generated program spends on each (median of per-round paired differences, {ROUNDS} rounds "
          f"x {REPEAT}); skipped (edit no longer matches): {skipped or 'none'}")
    names = [n for n in runners if n not in ("floor", "generated")]
    print("  " + " ".join(f"{n[:14]:>14}" for n in ["frame", "gen-floor"] + names))
    for what, row in saved.items():
        print("  " + f"{what[:14]:>14} {row['generated_above_floor_ns']:>14.0f} " +
              " ".join(f"{row[n]:>14.0f}" for n in names))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
