"""The compiler pipeline: named stages, each printable (``--dump STAGE``).

    parse -> ast -> semantic (checked model) -> lower (IR) -> normalize+intern
    -> merge (statistics) -> layers -> plan (compiler/plan.py) -> backends (C, Python reference,
    manifest, stubs)
"""

from __future__ import annotations

from . import ir, lower as lower_mod
from . import model as M
from .passes import intern, layers, merge_stats

STAGES = ("ast", "model", "lower", "intern", "merge", "ir", "plan", "c", "stubs", "manifest")


def build_ir(program: M.ProgramM, upto: str = "ir") -> ir.ProgramIR:
    prog = lower_mod.lower(program)
    if upto == "lower":
        return prog
    prog = intern.run(prog)
    if upto == "intern":
        return prog
    prog = merge_stats.run(prog)
    if upto == "merge":
        return prog
    return layers.run(prog)
