"""Triggers that cannot enable their target when it would report: ``check``'s note.

An on-demand detector is only as good as what enables it. Where the trigger's rule and
the target's rule compare counts of the same packets, the question is decidable: the
trigger's statistic counts at least what the target's does (a ``count`` or ``cms`` over
packets that every packet the target counts is among, keyed by the target's key fields
or fewer, in the same window), so if its threshold is at or below the target's, whatever
the target would report the trigger has enabled it for, in the same window; above it,
counts between the two thresholds are never reported. Only that case is noted (an
undecidable pair, such as distinct flows against SYNs per destination, is not).
"""

from __future__ import annotations

from dsl.errors import Diagnostic
from dsl.fields import implied_layers

from . import ir
from .plan import conjuncts


def _layers_read(prog: ir.ProgramIR, pids) -> set[str]:
    """The layers a packet has whenever all of ``pids`` hold (each field compared is present)."""
    out: set[str] = set()
    for pid in pids:
        p = prog.preds[pid].pred
        if isinstance(p, ir.PLayer):
            out |= implied_layers(p.layer)
        elif isinstance(p, ir.PCmp):
            for v in (p.left, p.right):
                if isinstance(v, ir.VField):
                    out |= implied_layers(v.field.layer)
    return out


def _implies(prog: ir.ProgramIR, guard: int, other: int) -> bool:
    """Whether every packet for which ``guard`` holds makes ``other`` hold (by conjuncts)."""
    have = conjuncts(prog, guard)
    layers = _layers_read(prog, have)
    for pid in conjuncts(prog, other) - have:
        p = prog.preds[pid].pred
        if not (isinstance(p, ir.PLayer) and p.layer in layers) and not isinstance(p, ir.PTrue):
            return False
    return True


def _threshold(prog: ir.ProgramIR, v) -> int | None:
    if isinstance(v, ir.VConst) and isinstance(v.value, int):
        return int(v.value)
    if isinstance(v, ir.VParam):
        return next((p.default for p in prog.params if (p.app, p.name) == (v.app, v.name)), None)
    return None


FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _count_rule(prog: ir.ProgramIR, rule: ir.RuleIR):
    """(the slot, its map, the count it fires past, the text of its threshold) of a rule
    ``when STAT > T`` (or ``>=``) on a count or count-min slot; else None."""
    cmps = []
    for pid in conjuncts(prog, rule.cond):                     # (the app's select is one)
        p = prog.preds[pid].pred
        if isinstance(p, ir.PCmp) and isinstance(p.right, ir.VStat) and p.op in FLIP:
            p = ir.PCmp(FLIP[p.op], p.right, p.left)           # (normalised: the constant first)
        if isinstance(p, ir.PCmp) and isinstance(p.left, ir.VStat):
            cmps.append(p)
    if len(cmps) != 1 or cmps[0].op not in (">", ">="):
        return None
    p = cmps[0]
    t = _threshold(prog, p.right)
    where = prog.stat_slots.get((p.left.app, p.left.stat, p.left.member))
    if t is None or where is None:
        return None
    m = next(m for m in prog.maps if m.name == where[0])
    s = next(s for s in m.slots if s.name == where[1])
    if s.func not in ("count", "cms"):
        return None
    text = f"param {p.right.name} = {t}" if isinstance(p.right, ir.VParam) else str(t)
    return s, m, t + (1 if p.op == ">" else 0), text, p.left.stat


def _dominates(trig, target) -> bool:
    """The trigger's slot counts at least the target's on every packet and window."""
    (ts, tm, _, _, _), (ds, dm, _, _, _) = trig, target
    if ts is ds:
        return True                      # one slot: the target reads the trigger's count
    if ds.func != "count" or ts.window_ns != ds.window_ns or ts.uses[0].app == ds.uses[0].app:
        return False
    target_key = {f.name for f in dm.key}
    if ts.func == "cms":
        return {f.name for f in ts.args} <= target_key
    return {f.name for f in tm.key} <= target_key


def notes(prog: ir.ProgramIR) -> list[Diagnostic]:
    modes = {a.name: a.mode for a in prog.apps}
    rules = {a.name: a.rules for a in prog.apps}
    out = []
    for a in prog.apps:
        if a.mode == "on_demand":
            continue                     # a trigger that is itself off most of the time: not judged
        for rule in a.rules:
            targets = [x.app for x in rule.actions if isinstance(x, ir.AEnable)]
            trig = _count_rule(prog, rule) if targets else None
            if trig is None:
                continue
            for app in targets:
                if modes.get(app) != "on_demand":
                    continue
                for other in rules.get(app, ()):
                    target = _count_rule(prog, other)
                    if target is None or not _dominates(trig, target):
                        continue
                    if not _implies(prog, target[0].guard, trig[0].guard):
                        continue
                    if trig[2] > target[2]:
                        out.append(Diagnostic(
                            f"'{a.name}' enables '{app}' only past {trig[2] - 1} on its statistic '{trig[4]}' "
                            f"({trig[3]}), but '{app}' reports past {target[2] - 1} on '{target[4]}' ({target[3]}), "
                            f"which counts no more of the same packets: what lies between is never reported",
                            rule.span, f"keep the trigger's threshold at or below the target's ({target[2] - 1})",
                            severity="note"))
    return out
