"""distinct (HyperLogLog) accuracy: 10^5 distinct flows, 20 seeds, in the kernel."""

from __future__ import annotations

import os

from benchmarks.accuracy import measure


def main() -> dict:
    if os.geteuid() != 0:
        print("accuracy: needs root (the kernel engine); skipped")
        return {"skipped": "needs root"}
    r = measure(100_000, 20)
    print(f"distinct accuracy: {r.seeds} seeds x {r.n:,} distinct flows, m = {r.registers} registers")
    print(f"  mean |relative error| {r.mean_abs_rel_error:.4%}, rms {r.rms_rel_error:.4%}, bias {r.bias:+.4%}")
    print(f"  theory (standard error 1.04/sqrt(m)): {r.theory:.4%}; rms / theory = {r.rms_rel_error / r.theory:.2f}")
    print(f"  estimates: min {min(r.estimates):,} max {max(r.estimates):,}")
    return {"seeds": r.seeds, "n": r.n, "registers": r.registers, "mean_abs_rel_error": r.mean_abs_rel_error,
            "rms_rel_error": r.rms_rel_error, "bias": r.bias, "theory": r.theory}
