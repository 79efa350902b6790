"""From per-round samples to costs, ratios and the issue's targets.

Every number is taken per round and then summarised over the rounds
(stats.summary: median and quartiles): a cost is a configuration's ns per
packet minus the floor's of the same round and frame; "separate" is the sum of
the apps' programs alone, each minus the floor (programs in sequence, each
paying its own work but not a second floor: the dispatch of several programs
is not counted, which favours separate); a ratio is A's cost / B's cost of the
same round.
"""

from __future__ import annotations

from . import stats

FLOOR = "floor"


def cost(data: dict, frame: str, config: str) -> list[float]:
    """Per round: ``config``'s ns per packet above the floor on ``frame``."""
    d = data[frame]
    return stats.paired(d[config], d[FLOOR])


def separate(data: dict, frame: str, configs: list[str]) -> list[float]:
    """Per round: the programs ``configs`` in sequence, above the floor."""
    return stats.summed([cost(data, frame, c) for c in configs])


def frame_mean(data: dict, frames: list[str], series) -> list[float]:
    """Per round, the mean over ``frames`` of ``series(frame)`` (every frame weighs the same)."""
    per = [series(f) for f in frames]
    return [sum(v) / len(v) for v in zip(*per)]


def ratio_summary(a: list[float], b: list[float]) -> dict | None:
    r = stats.ratios(a, b)
    return stats.summary(r) if r else None


def target(name: str, measured: dict | None, limit: float, unit: str, what: str) -> dict:
    """One target of the issue: met when the median is within ``limit``."""
    if measured is None:
        return {"target": name, "what": what, "limit": limit, "unit": unit, "median": None, "met": None,
                "note": "not measurable (a cost at or below the floor in some round)"}
    return {"target": name, "what": what, "limit": limit, "unit": unit, "median": measured["median"],
            "q1": measured["q1"], "q3": measured["q3"], "met": measured["median"] <= limit}
