"""Medians, quartiles and paired differences of per-round samples.

A cost is a configuration's time per packet minus the floor's *of the same
round* (the paired difference), summarised by its median and quartiles over
the rounds; a ratio is taken per round too (cost A / cost B of the same round)
and summarised the same way. Pairing within a round cancels what drifts from
round to round (another engineer's load on the shared kernel, frequency).
"""

from __future__ import annotations

import statistics


def quartiles(values) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values`` (inclusive method)."""
    v = sorted(values)
    if not v:
        raise ValueError("no values")
    if len(v) == 1:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def summary(values) -> dict:
    q1, med, q3 = quartiles(values)
    return {"median": round(med, 2), "q1": round(q1, 2), "q3": round(q3, 2), "n": len(values)}


def paired(a: list[float], b: list[float]) -> list[float]:
    """a[r] - b[r] for every round r."""
    if len(a) != len(b):
        raise ValueError(f"paired samples of different lengths ({len(a)} and {len(b)})")
    return [x - y for x, y in zip(a, b)]


def summed(series: list[list[float]]) -> list[float]:
    """Per round, the sum of several configurations' values (programs in sequence)."""
    return [sum(vals) for vals in zip(*series)]


def ratios(a: list[float], b: list[float]) -> list[float]:
    """a[r] / b[r] for every round r whose b[r] is positive. A round where b[r] <= 0 (the
    floor's run of it was interrupted: every cost of that round comes out negative) is
    left out, and the summary's ``n`` says how many rounds count; more than a quarter of
    them left out is refused (no ratio): a cost that small is noise."""
    out = [x / y for x, y in zip(a, b) if y > 0]
    return out if len(out) * 4 >= len(b) * 3 else []
