"""The bounds of one merged program, checked on the plan before any C is printed.

Bounds that one spec line can break (a key's fields, a sketch's size, a rate) are
checked where that line is analysed (compiler/semantic.py). The bounds here are
properties of the whole merged program -- how many maps it uses, how big its
per-packet scratch is -- so they are known only once the apps are merged and
planned. Each is a fact of the kernel, named in compiler/abi.py; past one,
``check``, ``compile`` and ``replay`` stop with an error at the spec text that
needs the first thing over the bound, saying which bound and why.
"""

from __future__ import annotations

from dsl.errors import Diagnostic

from . import abi
from .plan import STAGE_BUDGET, Plan, span_order

STAGE_BUDGET_TEXT = f"{STAGE_BUDGET:,}"


def check(plan: Plan) -> list[Diagnostic]:
    return _maps(plan) + _scratch(plan) + _stages(plan)


def _stages(plan: Plan) -> list[Diagnostic]:
    if len(plan.stages) <= abi.MAX_STAGES:
        return []
    over = plan.stages[abi.MAX_STAGES]
    spans = [u.span for m in plan.maps if m.name in over.maps for u in m.map.uses]
    spans += [plan.app(a).app.span for a in over.t3]
    return [Diagnostic(
        f"the merged program needs {len(plan.stages)} stages of about {STAGE_BUDGET_TEXT} instructions "
        f"(this is in stage {abi.MAX_STAGES + 1}); the kernel chains at most {abi.MAX_STAGES - 1} tail calls "
        f"(MAX_TAIL_CALL_CNT), so {abi.MAX_STAGES} stages", min(spans, key=span_order),
        "split the apps into two programs")]


def _maps(plan: Plan) -> list[Diagnostic]:
    if plan.staged:
        return _stage_maps(plan)
    maps = plan.kernel_maps()
    if len(maps) <= abi.MAX_MAPS:
        return []
    fixed = [m for m in maps if m.span is None]
    needed = sorted((m for m in maps if m.span is not None),
                    key=lambda m: (m.span.file, m.span.line, m.span.col))
    over = needed[abi.MAX_MAPS - len(fixed)]
    rings = sum(1 for m in maps if m.role == "ring buffer")
    what = "its ring buffer" if over.role == "ring buffer" else f"a {over.role} map"
    return [Diagnostic(
        f"this needs {what}, map number {abi.MAX_MAPS + 1} of the merged program; the kernel allows "
        f"{abi.MAX_MAPS} maps per program ({len(maps)} needed: {len(fixed)} fixed, "
        f"{len(maps) - len(fixed) - rings} for statistics, {rings} ring buffer{'' if rings == 1 else 's'})",
        over.span,
        "statistics with the same key share one map: key more of them alike, or split the apps "
        "into two programs")]


def _stage_maps(plan: Plan) -> list[Diagnostic]:
    """Each stage is a program of its own: the bound is per stage."""
    out = []
    for st in plan.stages:
        used = plan.stage_maps(st)
        if len(used) <= abi.MAX_MAPS:
            continue
        spans = [u.span for m in plan.maps if m.name in st.maps for u in m.map.uses]
        spans += [plan.app(a).app.span for a in st.t3] or [plan.prog.apps[0].span]
        out.append(Diagnostic(
            f"stage {st.index} of the merged program uses {len(used)} maps; the kernel allows "
            f"{abi.MAX_MAPS} maps per program (MAX_USED_MAPS)", min(spans, key=span_order),
            "statistics with the same key share one map: key more of them alike, or split the apps "
            "into two programs"))
    return out


def _scratch(plan: Plan) -> list[Diagnostic]:
    size = plan.scratch_size
    if size <= abi.PERCPU_VALUE_MAX:
        return []
    # The app whose predicate is the first that does not fit (predicates are laid
    # out in evaluation order after the reads), or the last app.
    apps = {a.name: a for a in plan.prog.apps}
    first_over = max(0, abi.PERCPU_VALUE_MAX - plan.scratch_head - plan.n_reads)
    users = plan.prog.preds[first_over].users if first_over < plan.n_preds else ()
    app = next((apps[u] for u in users if u in apps), plan.prog.apps[-1])
    return [Diagnostic(
        f"with app '{app.name}' the merged program needs {size} bytes of per-CPU scratch "
        f"({plan.n_preds} predicates, room for {plan.n_reads} statistic value"
        f"{'' if plan.n_reads == 1 else 's'} read by rules); the kernel's limit for a per-CPU value "
        f"is {abi.PERCPU_VALUE_MAX} bytes",
        app.span, "shared conditions are evaluated once: write large sets as one 'in { ... }'")]
