"""distinct's accuracy in the kernel, against HyperLogLog's theory.

Deterministic: fixed seeds give the same registers every run. `make bench`
(benchmarks/bench_accuracy.py) runs the full 20 seeds and reports the numbers.
"""

from __future__ import annotations

import pytest

from benchmarks.accuracy import measure

pytestmark = pytest.mark.kernel


def test_distinct_error_within_theory():
    r = measure(n=100_000, seeds=5)
    assert r.registers == 4096
    # standard error 1.04/sqrt(4096) = 1.625 %: every seed within 3 sigma, the
    # rms over seeds within 1.5 sigma, and no bias beyond one sigma
    assert all(abs(e) < 3 * r.theory for e in r.rel_errors), r.estimates
    assert r.rms_rel_error < 1.5 * r.theory
    assert abs(r.bias) < r.theory


def test_small_counts_use_linear_counting():
    # 100 flows in 4096 registers: linear counting, whose standard error here is
    # about 1 % (sqrt(m (e^t - t - 1)) / n with t = n/m)
    r = measure(n=100, seeds=3)
    assert r.estimates == [98, 97, 101]
    assert all(abs(e - 100) <= 4 for e in r.estimates)
