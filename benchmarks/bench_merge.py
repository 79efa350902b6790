"""What merging saves in the kernel: ns per packet of the merged program versus
the same apps as separate programs, on the same frames, measured in one run.

Each frame of a sample of the demo traffic is run with BPF_PROG_TEST_RUN
(repeat 200: the kernel's mean time per run) through the merged program of
all specs/ and through each app's own program; the figure is the ratio of the
sums. Ratios, not absolute times, are what to compare: the machine is shared.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = 200
SAMPLE = 400


def _load(paths):
    from compiler.driver import compile_files
    from runtime.dataplane.maps import ProgramMaps
    from runtime.dataplane.loader import load
    art = compile_files([str(p) for p in paths], replay=True)
    loaded = load(art.c)
    ProgramMaps(loaded.bpf, art.manifest).init()
    return loaded, art


def main() -> dict:
    if os.geteuid() != 0:
        print("merge benchmark: needs root; skipped")
        return {"skipped": "needs root"}
    from examples.traffic import generators as g
    from runtime.dataplane.bpf_test_run import TestRunner

    frames = g.mixed(seed=5)
    step = max(1, len(frames) // SAMPLE)
    sample = [struct.pack("<Q", ts) + data for ts, data in frames[::step] if len(data) >= 14][:SAMPLE]
    specs = sorted((ROOT / "specs").glob("*.mon"))
    merged, art = _load(specs)
    groups = [[p] for p in specs if p.name not in ("flow_watch.mon", "syn_flood.mon")]
    groups.append([ROOT / "specs/flow_watch.mon", ROOT / "specs/syn_flood.mon"])   # one enables the other
    alone = [_load(gr)[0] for gr in groups]
    try:
        def total(loaded) -> int:
            r = TestRunner(loaded.fd, want_data_out=False)
            return sum(r.run(f, repeat=REPEAT).duration_ns for f in sample)
        t_merged = total(merged)
        t_alone = [total(l) for l in alone]
    finally:
        merged.close()
        for l in alone:
            l.close()
    n = len(sample)
    ratio = sum(t_alone) / t_merged
    print(f"{len(art.ir.apps)} apps, {n} frames x {REPEAT} runs each")
    print(f"  merged program:        {t_merged / n:8.1f} ns/packet ({merged.info.xlated_insns} insns)")
    print(f"  separate programs sum: {sum(t_alone) / n:8.1f} ns/packet ({len(alone)} programs)")
    print(f"  separate / merged:     {ratio:8.2f}x")
    return {"apps": len(art.ir.apps), "frames": n, "merged_ns_per_packet": round(t_merged / n, 1),
            "separate_ns_per_packet": round(sum(t_alone) / n, 1), "ratio": round(ratio, 2)}


if __name__ == "__main__":
    main()
