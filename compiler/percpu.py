"""Which statistics maps keep a value per CPU.

A fused map that no rule reads in the kernel, whose slots combine exactly and whose
copy of the values is small (abi.PERCPU_COPY_BYTES_MAX) keeps a value per CPU: each
CPU updates its own copy with plain adds, and no two cores contend for the cache line
of a hot key (a flood towards one victim). User space combines the copies when it
reads them (runtime/abi/percpu.py). A map a rule reads stays shared: the rule needs
the total across CPUs at the packet; so does a large map (the kernel allocates a copy
per possible CPU). The merge pass (compiler/passes/merge_stats.py) keeps the statistics
rules read apart from the others of the same key where that lets the others be
per-CPU; the plan (compiler/plan.py) chooses the map types.
"""

from __future__ import annotations

from . import abi, ir
from . import layout as L

# Slots whose per-CPU values user space combines exactly: sums add, maxima (and minima,
# kept as ~min) take the largest.
FUNCS = ("count", "sum", "min", "max", "hist")
TYPES = {"hash": "percpu_hash", "lru_hash": "lru_percpu_hash", "array": "percpu_array"}


def combinable(m: ir.StatMap, entries: int) -> bool:
    """Whether ``m``'s values may be kept per CPU: a fused map of FUNCS slots whose
    ``entries`` values take at most abi.PERCPU_COPY_BYTES_MAX a copy."""
    return (m.kind == "fused" and all(s.func in FUNCS for s in m.slots)
            and entries * L.value_struct(m).size <= abi.PERCPU_COPY_BYTES_MAX)


def stats_read_by_rules(prog: ir.ProgramIR) -> set[tuple[str, str]]:
    """(app, stat) of every statistic a rule condition reads (in the kernel, at the packet)."""
    out = set()
    for n in prog.preds:
        for v in ir.pred_values(n.pred):
            for x in ir.walk_values(v):
                if isinstance(x, ir.VStat):
                    out.add((x.app, x.stat))
    return out
