"""One call from spec files to every artifact: the C program, ASL stubs, manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dsl.errors import SpecError

from . import ir, limits, manifest as manifest_mod
from . import model as M
from . import plan as plan_mod
from .codegen import render_c
from .frontend import load
from .pipeline import build_ir
from .stubs import render_stub, stub_filename

C_FILE = "xdpmon.c"
MANIFEST_FILE = "manifest.json"


@dataclass
class Artifacts:
    model: M.ProgramM
    ir: ir.ProgramIR
    plan: plan_mod.Plan
    c: str
    stubs: dict[str, str]        # file name -> text
    manifest: dict
    sources: dict[str, str]

    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=2, sort_keys=False) + "\n"


def plan_program(model: M.ProgramM, sources: dict[str, str] | None = None,
                 replay: bool = False, stage_budget: int = plan_mod.STAGE_BUDGET) -> plan_mod.Plan:
    """Merge and plan; raises SpecError where the merged program is past a bound
    of the kernel (compiler/limits.py)."""
    plan = plan_mod.build(build_ir(model), replay=replay, stage_budget=stage_budget)
    diags = limits.check(plan)
    if diags:
        raise SpecError(diags, sources)
    return plan


def compile_program(model: M.ProgramM, sources: dict[str, str] | None = None, replay: bool = False,
                    stage_budget: int = plan_mod.STAGE_BUDGET) -> Artifacts:
    plan = plan_program(model, sources, replay, stage_budget)
    prog = plan.prog
    c = render_c(plan)
    stubs = {stub_filename(a.name): render_stub(plan, a.name) for a in prog.apps}
    return Artifacts(model, prog, plan, c, stubs, manifest_mod.build(plan, C_FILE), sources or {})


def compile_files(paths, replay: bool = False, stage_budget: int = plan_mod.STAGE_BUDGET) -> Artifacts:
    model, sources = load(list(paths))
    return compile_program(model, sources, replay, stage_budget)


def write(art: Artifacts, out: Path, force: bool = False) -> list[tuple[str, str]]:
    """Write the artifacts under ``out``; returns (path, what happened) pairs.
    An existing ASL stub is never overwritten unless ``force``."""
    out.mkdir(parents=True, exist_ok=True)
    done = []
    (out / C_FILE).write_text(art.c)
    done.append((str(out / C_FILE), "written"))
    (out / MANIFEST_FILE).write_text(art.manifest_json())
    done.append((str(out / MANIFEST_FILE), "written"))
    asl = out / "asl"
    asl.mkdir(exist_ok=True)
    for name, text in art.stubs.items():
        path = asl / name
        if path.exists() and not force:
            done.append((str(path), "kept (exists; --force overwrites)"))
            continue
        path.write_text(text)
        done.append((str(path), "written"))
    return done
