"""Helpers for the compiler tests: write small inline specs to files and run
the front end, the IR pipeline or the whole compiler on them.

Specs are written under a per-test directory and loaded with paths *relative*
to it (the tests chdir there), so spans, the generated C and the manifest name
``a.mon``, never an absolute path.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from compiler import ir
from compiler.driver import compile_files
from compiler.frontend import load
from compiler.pipeline import build_ir

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def cwd(path: Path):
    """Run the body with ``path`` as the working directory."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def write_specs(tmp_path: Path, specs) -> list[str]:
    """``specs``: one spec text (written to a.mon) or {file name: text}."""
    if isinstance(specs, str):
        specs = {"a.mon": specs}
    names = []
    for name, text in specs.items():
        (tmp_path / name).write_text(text)
        names.append(name)
    return names


def model_of(tmp_path: Path, specs):
    names = write_specs(tmp_path, specs)
    with cwd(tmp_path):
        program, _ = load(names)
    return program


def ir_of(tmp_path: Path, specs, upto: str = "ir") -> ir.ProgramIR:
    return build_ir(model_of(tmp_path, specs), upto=upto)


def compile_text(tmp_path: Path, specs, replay: bool = False):
    names = write_specs(tmp_path, specs)
    with cwd(tmp_path):
        return compile_files(names, replay=replay)


# ---- reading the IR ------------------------------------------------------------------

def pred_texts(prog: ir.ProgramIR) -> list[str]:
    return [f"p{n.id} = {ir.pstr(n.pred)}" for n in prog.preds]


def find_pred(prog: ir.ProgramIR, text: str) -> ir.PredNode:
    """The interned node whose pstr is ``text`` (exactly one)."""
    found = [n for n in prog.preds if ir.pstr(n.pred) == text]
    assert len(found) == 1, f"{text!r}: {len(found)} nodes in\n" + "\n".join(pred_texts(prog))
    return found[0]


def map_of(prog: ir.ProgramIR, app: str, stat: str) -> ir.StatMap:
    for m in prog.maps:
        if any(u.app == app and u.stat == stat for u in m.uses):
            return m
    raise KeyError((app, stat))


def slot_of(prog: ir.ProgramIR, app: str, stat: str, member: str) -> ir.Slot:
    mname, sname = prog.stat_slots[(app, stat, member)]
    m = next(m for m in prog.maps if m.name == mname)
    return next(s for s in m.slots if s.name == sname)


def section(dump_text: str, name: str) -> str:
    """One section ("preds:", "maps:", ...) of ir.dump() output, without its title."""
    lines = dump_text.split("\n")
    start = lines.index(f"{name}:") + 1
    out = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


# ---- reading the generated C ---------------------------------------------------------------

_ASSIGN = re.compile(r"^\s*P\[(\d+)\] = ", re.M)


def pred_assignments(c_source: str) -> dict[int, int]:
    """How many times the C assigns each predicate slot ``P[id] = ...``."""
    counts: dict[int, int] = {}
    for m in _ASSIGN.finditer(c_source):
        counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
    return counts


def closed(layers) -> frozenset[str]:
    """A layer request with every layer the given ones imply (dsl.fields.IMPLIES): tcp
    brings l4 and ip, so the parser decodes TCP and UDP of both families."""
    from dsl.fields import implied_layers

    out = {"eth", "pkt"}
    for layer in layers:
        out |= implied_layers(layer)
    return frozenset(out)


def positional_names(maps) -> dict[str, str]:
    """content-derived name -> positional one: m0, m1, ... in program order, s0, s1, ...
    for the slots in layout order."""
    slots = [s.name for m in maps for s in m.slots]
    return {m.name: f"m{i}" for i, m in enumerate(maps)} | {s: f"s{i}" for i, s in enumerate(slots)}


def positional(prog: ir.ProgramIR) -> ir.ProgramIR:
    """``prog`` with its content-derived map and slot names (m_3f2a91, s_0c1d2e) replaced
    by positional ones (m0, s0, ... in program and layout order), so that tests can state
    expected dumps readably. The names themselves are tested in test_identity.py."""
    from dataclasses import replace

    n = positional_names(prog.maps)
    out = replace(prog)
    out.maps = [replace(m, name=n[m.name], slots=tuple(replace(s, name=n[s.name]) for s in m.slots))
                for m in prog.maps]
    out.stat_slots = {k: (n[mn], n[sn]) for k, (mn, sn) in prog.stat_slots.items()}
    out.track_maps = {k: n[v] for k, v in prog.track_maps.items()}
    return out


def aliased(art):
    """Artifacts whose C, manifest and IR name maps and slots positionally (m0, s0, ...:
    maps in program order, slots in layout order), for readable expectations."""
    import json
    from types import SimpleNamespace

    names = positional_names(art.ir.maps)

    def sub(text: str) -> str:
        return re.sub(r"(?<![0-9a-zA-Z])([ms]_[0-9a-f]{6,})(?![0-9a-f])", lambda m: names.get(m.group(1), m.group(1)), text)

    return SimpleNamespace(model=art.model, ir=positional(art.ir), plan=art.plan, c=sub(art.c),
                           manifest=json.loads(sub(json.dumps(art.manifest))), stubs=art.stubs)


def rule_fired(counters: dict, k: int = 0) -> int:
    """The fired counter of rule ``k`` of the (only) app with rules: ``rule.<app>.r<k>.fired``."""
    (name,) = [n for n in counters if re.fullmatch(rf"rule\.\w+\.r{k}\.fired", n)]
    return counters[name]


def insert_failed(manifest: dict, app: str, stat: str) -> str:
    """The insert-failure counter of the map that keeps ``app.stat``."""
    manifest = getattr(manifest, "raw", manifest)          # a runtime.abi Manifest, or its data
    a = next(x for x in manifest["apps"] if x["name"] == app)
    st = next(s for s in a["stats"] if s["name"] == stat)
    return f"map.{st['map']}.insert_failed"
