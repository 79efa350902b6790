"""Values typed by operators at run time (``ctl set``, ``--for``, the deployment
config), read with the language's units (dsl/units.py): ``2k`` is 2000,
``1.5s`` is 1,500,000,000 ns, as in a spec.

``parse_value(text)`` is a param's value (a count, or a duration in ns, as the
spec's ``param NAME = ...`` would take it); ``parse_duration(text)`` a duration
in ns (a bare number is refused: say the unit). Both raise ValueError with a
message an operator can act on.
"""

from __future__ import annotations

import re

from dsl.ast import Number, Span
from dsl.units import COUNT_MULT, COUNT_UNITS, DURATION_UNITS, NS_PER, UnitError, count, duration_ns

_NUMBER = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]*)")
_SPAN = Span("<value>", 1, 1, 1, 1)


def _number(text: str) -> Number:
    t = text.strip()
    m = _NUMBER.fullmatch(t)
    if not m:
        raise ValueError(f"'{text}' is not a number (write e.g. 2000, 2k, 500ms)")
    mag = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    return Number(mag, m.group(2), t, _SPAN)


def parse_value(text: str | int, what: str = "value") -> int:
    """A param's value: a count (``2k``) or a duration in ns (``1s``)."""
    if isinstance(text, bool):
        raise ValueError(f"{what}: {text!r} is not a number")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{what} must not be negative")
        return text
    num = _number(str(text))
    if num.unit and num.unit not in COUNT_MULT and num.unit not in NS_PER:
        raise ValueError(f"unknown unit '{num.unit}' in {what} (a count takes {COUNT_UNITS}; "
                         f"a duration {DURATION_UNITS})")
    try:
        if num.unit and num.unit not in COUNT_MULT:
            return duration_ns(num, what)
        if num.unit == "" and isinstance(num.magnitude, float):
            raise ValueError(f"{what}: '{text}' is not a whole number")
        return count(num, what)
    except UnitError as e:
        raise ValueError(e.message + (f" ({e.hint})" if e.hint else "")) from None


def parse_duration(text: str | int, what: str = "duration") -> int:
    """A duration in ns; ``text`` must carry a time unit (``30s``, ``5m``, ``1h``)."""
    if isinstance(text, int) and not isinstance(text, bool):
        raise ValueError(f"{what} needs a unit: write e.g. {text}s")
    num = _number(str(text))
    try:
        return duration_ns(num, what)
    except UnitError as e:
        raise ValueError(e.message + (f" ({e.hint})" if e.hint else "")) from None
