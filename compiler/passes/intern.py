"""Intern (hash-cons) predicates: each distinct normalised predicate becomes
one PredNode with one id, whatever app or tier wrote it. Operands of and/or/not
are interned first, so ``ProgramIR.preds`` is in evaluation order and a
condition shared by several apps is evaluated once per packet.

Also records, per node, the apps that use it (directly or through a parent)
and its phase: 1 when it reads only packet fields and params (evaluated before
statistics are updated), 3 when it reads statistics (evaluated in T3).
"""

from __future__ import annotations

from dataclasses import replace

from .. import ir
from .normalize import normalize


class Interner:
    def __init__(self) -> None:
        self.nodes: list[ir.PredNode] = []
        self.by_key: dict = {}
        self.users: list[set[str]] = []
        self.spans: list[list] = []

    def intern(self, p: ir.Pred, app: str, span=None) -> int:
        p = normalize(p)
        return self._intern(p, app, span)

    def _intern(self, p: ir.Pred, app: str, span) -> int:
        if isinstance(p, (ir.PAnd, ir.POr)):
            ids = [self._intern(o, app, None) for o in p.operands]
            p = type(p)(tuple(ir.PRef(i) for i in ids))
            phase = max(self.nodes[i].phase for i in ids)
        elif isinstance(p, ir.PNot):
            i = self._intern(p.operand, app, None)
            p = ir.PNot(ir.PRef(i))
            phase = self.nodes[i].phase
        else:
            phase = 3 if _reads_stats(p) else 1
        key = ir.pkey(p)
        pid = self.by_key.get(key)
        if pid is None:
            pid = len(self.nodes)
            self.by_key[key] = pid
            self.nodes.append(ir.PredNode(pid, p, (), phase))
            self.users.append(set())
            self.spans.append([])
        self._use(pid, app)
        if span is not None and span not in self.spans[pid]:
            self.spans[pid].append(span)
        return pid

    def _use(self, pid: int, app: str) -> None:
        self.users[pid].add(app)
        p = self.nodes[pid].pred
        for sub in _children(p):
            self._use(sub, app)

    def finish(self) -> list[ir.PredNode]:
        return [replace(n, users=tuple(sorted(self.users[n.id])), spans=tuple(self.spans[n.id]))
                for n in self.nodes]


def _children(p) -> list[int]:
    if isinstance(p, (ir.PAnd, ir.POr)):
        return [o.id for o in p.operands]
    if isinstance(p, ir.PNot):
        return [p.operand.id]
    return []


def _reads_stats(p) -> bool:
    if isinstance(p, ir.PCmp):
        return ir.value_reads_stats(p.left) or ir.value_reads_stats(p.right)
    if isinstance(p, ir.PIn):
        return ir.value_reads_stats(p.value)
    return False


def run(prog: ir.ProgramIR) -> ir.ProgramIR:
    """Intern every app's select and rule conditions and every pending stat's
    guards; the apps and rules then hold predicate ids."""
    it = Interner()
    apps = []
    for app in prog.apps:
        select = None if app.select is None else it.intern(app.select, app.name, app.select_span or app.span)
        rules = tuple(replace(r, cond=it.intern(r.cond, app.name, r.span)) for r in app.rules)
        apps.append(replace(app, select=select, rules=rules))
    pending = []
    for ps in prog.pending_stats:
        g = it.intern(ps.guard, ps.app, ps.stat.span)
        og = None if ps.open_guard is None else it.intern(ps.open_guard, ps.app, ps.stat.span)
        cg = None if ps.close_guard is None else it.intern(ps.close_guard, ps.app, ps.stat.span)
        pending.append(replace(ps, guard=g, open_guard=og, close_guard=cg))
    prog.apps = apps
    prog.pending_stats = pending
    prog.preds = it.finish()
    return prog
