"""Lowering: the checked model (compiler/model.py) to the merged IR (compiler/ir.py).

Each app's expressions become IR predicates and values: either-direction port
fields expand to ``sport == v or dport == v``, a statistic's guard becomes
``select and where``, T3 stat references name their stat. Nothing is shared
yet: every app's statistics go to ``ProgramIR.pending_stats`` for the merge
pass, and predicates are plain trees for the normalise and intern passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.fields import FIELDS, Kind

from . import ir
from . import model as M


@dataclass(frozen=True)
class PendingStat:
    """One app's statistic before merging."""
    app: str
    mode: str
    stat: M.StatM
    guard: ir.Pred                    # select and where (plain tree until interned)
    open_guard: ir.Pred | None = None
    close_guard: ir.Pred | None = None


def lower(program: M.ProgramM) -> ir.ProgramIR:
    apps: list[ir.AppIR] = []
    params: list[ir.ParamIR] = []
    pending: list[PendingStat] = []
    rule_id = 0
    limiter = 0
    for index, app in enumerate(program.apps):
        select = value_pred(app.select) if app.select is not None else None
        for p in app.params:
            params.append(ir.ParamIR(app.name, p.name, p.default, len(params)))
        for st in app.stats:
            where = value_pred(st.where) if st.where is not None else None
            guard = _and(select, where)
            if st.kind == "track":
                pending.append(PendingStat(app.name, app.mode, st, guard,
                                           _and(guard, value_pred(st.open_when)),
                                           _and(guard, value_pred(st.close_when))))
            else:
                pending.append(PendingStat(app.name, app.mode, st, guard))
        rules = []
        for r in app.rules:
            actions = []
            for a in r.actions:
                act, limiter = _action(a, limiter)
                actions.append(act)
            # A rule fires only for packets the app selects.
            cond = _and(select, value_pred(r.cond))
            rules.append(ir.RuleIR(rule_id, app.name, cond, tuple(actions), r.span))
            rule_id += 1
        apps.append(ir.AppIR(app.name, index, app.mode, select, tuple(rules), app.asl, app.file, app.span,
                             tuple(s.name for s in app.stats),
                             getattr(app.select, "span", None)))
    return ir.ProgramIR(apps=apps, params=params, pending_stats=pending)


def _and(a, b):
    if a is None:
        return b if b is not None else ir.PTrue()
    if b is None:
        return a
    return ir.PAnd((a, b))


def _limit(rate: M.RateM | None) -> ir.Limit | None:
    if rate is None:
        return None
    return ir.Limit(rate.count, rate.per_ns, rate.text)


def _action(a, limiter: int):
    if isinstance(a, M.SendPacketM):
        return ir.ASendPacket(tuple(f.field for f in a.fields), _limit(a.limit), limiter), limiter + 1
    if isinstance(a, M.SendSummaryM):
        # "every" is itself a limit (one summary per period); with an explicit
        # limit too, the stricter of the two rates applies.
        every = ir.Limit(1, a.every_ns, f"1/{ir._fmt_ns(a.every_ns)}")
        lim = _limit(a.limit)
        if lim is not None and lim.count * a.every_ns < lim.per_ns:
            every = lim
        return ir.ASendSummary(a.every_ns, every, limiter), limiter + 1
    if isinstance(a, M.EnableM):
        return ir.AEnable(a.app, a.duration_ns), limiter
    if isinstance(a, M.AlertM):
        return ir.AAlert(a.message, _limit(a.limit), limiter), limiter + 1
    raise AssertionError(a)


# ---- expressions ------------------------------------------------------------------

def value(e) -> ir.Value:
    if isinstance(e, M.FieldE):
        return ir.VField(e.field)
    if isinstance(e, M.ConstE):
        return ir.VConst(e.kind, e.value)
    if isinstance(e, M.ParamE):
        return ir.VParam(e.app, e.name)
    if isinstance(e, M.StatValueE):
        return ir.VStat(e.app, e.stat, e.member, tuple(k.field for k in e.key))
    if isinstance(e, M.StatSizeE):
        return ir.VSize(e.app, e.stat)
    if isinstance(e, M.ArithE):
        return ir.VArith(e.op, value(e.left), value(e.right))
    raise AssertionError(f"not a value: {e!r}")


def value_pred(e) -> ir.Pred:
    """A condition of the checked model as an IR predicate tree."""
    if isinstance(e, M.LayerE):
        return ir.PLayer(e.layer)
    if isinstance(e, M.FieldE):              # a flag used as a condition
        return _either(e.field, lambda f: ir.PCmp("==", ir.VField(f), ir.VConst(Kind.BOOL, True)))
    if isinstance(e, M.ConstE) and e.kind == Kind.BOOL:
        return ir.PTrue() if e.value else ir.PFalse()
    if isinstance(e, M.AndE):
        return ir.PAnd(tuple(value_pred(o) for o in e.operands))
    if isinstance(e, M.OrE):
        return ir.POr(tuple(value_pred(o) for o in e.operands))
    if isinstance(e, M.NotE):
        return ir.PNot(value_pred(e.operand))
    if isinstance(e, M.CmpE):
        left, right = e.left, e.right
        if isinstance(left, M.FieldE) and left.field.either:
            r = value(right)
            return _either(left.field, lambda f: ir.PCmp(e.op, ir.VField(f), r))
        return ir.PCmp(e.op, value(left), value(right))
    if isinstance(e, M.InE):
        items = tuple(_item(i) for i in e.items)
        if isinstance(e.left, M.FieldE) and e.left.field.either:
            return _either(e.left.field, lambda f: ir.PIn(ir.VField(f), items))
        return ir.PIn(value(e.left), items)
    raise AssertionError(f"not a condition: {e!r}")


def _either(field, make):
    """``tcp.port OP x`` is ``tcp.sport OP x or tcp.dport OP x``."""
    if not field.either:
        return make(field)
    a, b = field.either
    return ir.POr((make(FIELDS[a]), make(FIELDS[b])))


def _item(i) -> ir.SetItem:
    if isinstance(i, M.RangeE):
        return ir.SetItem("range", i.lo, i.hi)
    if isinstance(i, M.PrefixE):
        return ir.SetItem("prefix", i.network, i.length)
    if isinstance(i, M.ConstE):
        return ir.SetItem("eq", i.value)
    raise AssertionError(i)
