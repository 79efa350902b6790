"""Units of the numbers written in specs: durations, counts and rates."""

from __future__ import annotations

import re
from fractions import Fraction

from .ast import Number

NS_PER = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}

COUNT_MULT = {
    "": 1,
    "k": 1_000,
    "K": 1_000,
    "M": 1_000_000,
    "G": 1_000_000_000,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
}

DURATION_UNITS = "ns, us, ms, s, m (or min), h, d"
COUNT_UNITS = "k, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024)"


MAX_U64 = (1 << 64) - 1


def _exact(num: Number) -> Fraction:
    """The magnitude exactly as written (1.1ms is 1100000ns, not a float
    that misses it by a hair)."""
    if isinstance(num.magnitude, int):
        return Fraction(num.magnitude)
    m = re.match(r"\d+(\.\d+)?", num.text)
    return Fraction(m.group(0)) if m else Fraction(str(num.magnitude))


class UnitError(ValueError):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


def duration_ns(num: Number, what: str) -> int:
    """A duration in nanoseconds; ``what`` names the place for messages."""
    if num.unit == "":
        raise UnitError(f"{what} needs a unit",
                        f"write e.g. {num.text}s or {num.text}ms ({DURATION_UNITS})")
    if num.unit not in NS_PER:
        raise UnitError(f"unknown time unit '{num.unit}' in {what}",
                        f"use one of {DURATION_UNITS}")
    ns = _exact(num) * NS_PER[num.unit]
    if ns.denominator != 1 or ns <= 0:
        raise UnitError(f"{what} must be a positive whole number of nanoseconds")
    if ns > MAX_U64:
        raise UnitError(f"{what} is too long (at most about 584 years)")
    return int(ns)


def count(num: Number, what: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    """A count, with an optional k/M/G or Ki/Mi/Gi multiplier, within [lo, hi]."""
    if num.unit not in COUNT_MULT:
        if num.unit in NS_PER:
            raise UnitError(f"{what} is a count, not a duration", f"write a plain number such as {int(num.magnitude)}")
        raise UnitError(f"unknown unit '{num.unit}' in {what}", f"use {COUNT_UNITS}")
    n = _exact(num) * COUNT_MULT[num.unit]
    if n.denominator != 1:
        raise UnitError(f"{what} must be a whole number")
    n = int(n)
    if not lo <= n <= hi:
        shown = str(n) if n < 10 ** 20 else num.text[:24] + ("..." if len(num.text) > 24 else "")
        raise UnitError(f"{what} must be between {lo} and {hi}, not {shown}")
    return n


def per_ns(unit: str) -> int | None:
    """Nanoseconds in the period of a rate such as 1000/s."""
    return NS_PER.get(unit)
