"""Where a generated program's time goes: the program cut short after each stage.

The generated ``xdpmon_main`` runs in stages (codegen_templates/xdp_program.c.j2): the
clock and the parser, the global counters and the filters, the per-packet setup (params,
scratch, control block, enable bits), T1's predicates, T2's maps, T3's rules. A *cut* of
stage k is the program with ``return XDP_PASS;`` inserted where stage k ends: it runs
stages 1..k. Timed side by side (benchmarks/bench_breakdown.py), stage k costs what cut k
costs more than cut k - 1 (cut 0 is the floor, the last cut the whole program).

What a cut measures: clang drops the code after the ``return``, and with it any earlier
computation only that code used. Here that is little: before the ``return`` the parsed
packet escapes (an empty ``asm`` with a memory clobber, as in parse.c.j2), so its stores
stay; the predicates are stored in the per-CPU scratch map and the statistics in maps. A stage's
cost is its own work plus what it makes the CPU wait for; the work of stages overlaps in
the CPU, so the parts are medians of per-round differences, not exact shares.

What each cut is checked for (``StageCheck``): every run's verdict XDP_PASS; from the
counters stage on, the counters grew exactly as ``repeat`` runs of the frame demand; from
T2 on, traffic_accounting counted the frame ``repeat`` times and a new-flow frame gave
``repeat`` new keys (benchmarks/perf/checks.py), as for any configuration of the harness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .checks import RunCheck


@dataclass(frozen=True)
class Stage:
    name: str
    about: str
    end: str | None          # regex of the place the stage ends (the cut goes there); None: the program's end
    after: bool = False      # the cut goes after the match (else before it)


STAGES = (
    Stage("parse", "the clock and the parser", r"\n    p->ts = now;\n", after=True),
    Stage("counters_filters", "the parse-outcome count, the interface and blocklist gates",
          r"\n    struct xm_params \*par = xm_params\.lookup\(XM_ZERO_KEY\);"),
    Stage("setup", "params, scratch and control lookups, the enable bits, P[] zeroed", r"\n    /\* ---- T1: "),
    Stage("t1", "T1: every distinct predicate", r"\n    /\* ---- T2: "),
    Stage("t2", "T2: the statistics' maps", r"\n    /\* ---- T3: "),
    Stage("t3", "T3: the rules", None),
)
COUNTED = 1        # index of the first stage whose cut updates the counters
MAPPED = 4         # ... whose cut updates the statistics


def cut_name(stage: Stage) -> str:
    return f"cut:{stage.name}"


def cut(c: str, stage: Stage) -> str:
    """The generated C ``c`` cut short where ``stage`` ends (``c`` itself for the last)."""
    if stage.end is None:
        return c
    found = list(re.finditer(stage.end, c))
    if len(found) != 1:
        raise ValueError(f"breakdown: the end of stage {stage.name!r} ({stage.end!r}) occurs {len(found)} times "
                         f"in the generated C, expected once: codegen_templates/xdp_program.c.j2 changed?")
    at = found[0].end() if stage.after else found[0].start()
    # the barrier keeps the parsed packet's stores (*p is read by nothing after the cut)
    ret = (f"\n    asm volatile(\"\" : : \"r\"(p) : \"memory\");   /* bench_breakdown: cut after stage {stage.name} */"
           f"\n    return XDP_PASS;\n")
    return c[:at] + ret + c[at:]


class StageCheck(RunCheck):
    """The harness's check of a run, limited to what the stages the cut keeps update."""

    def __init__(self, name: str, prog, stage_index: int):
        super().__init__(name, prog)
        if stage_index < COUNTED:
            self.xdpmon = False                     # no counter is updated yet: the verdict only
        if stage_index < MAPPED:
            self.has_accounting = False             # no statistic yet
            self.src_maps = {}


def stage_costs(data: dict, frame: str, floor: str, cuts: list[str]) -> list[list[float]]:
    """Per stage, per round: cut k's ns minus cut k - 1's (cut 0: the floor)."""
    d = data[frame]
    prev = d[floor]
    out = []
    for name in cuts:
        out.append([a - b for a, b in zip(d[name], prev)])
        prev = d[name]
    return out


def without_map(c: str, name: str) -> str:
    """The generated C ``c`` with T2's update of map ``name`` never taken (``if (0 && ...``):
    what that map costs is the whole program's time minus this one's."""
    pattern = r"(\n    /\* %s: [^\n]*\n(?:    /\*[^\n]*\n)*    if \()" % re.escape(name)
    found = list(re.finditer(pattern, c))
    if len(found) != 1:
        raise ValueError(f"breakdown: T2's block of map {name!r} occurs {len(found)} times in the generated C, "
                         f"expected once: codegen_templates/t2.c.j2 changed?")
    at = found[0].end()
    return c[:at] + "0 && " + c[at:]


class MapOffCheck(RunCheck):
    """The harness's check of a run of a program without T2's update of one map: the
    statistics that map holds are not checked."""

    def __init__(self, name: str, prog, map_name: str):
        super().__init__(name, prog)
        held = {(u["app"], u["stat"]) for m in prog.manifest.raw["maps"] if m["name"] == map_name for u in m["uses"]}
        if ("traffic_accounting", "per_dst") in held:
            self.has_accounting = False
        self.src_maps = {k: v for k, v in self.src_maps.items() if v != map_name}
