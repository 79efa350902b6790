"""The front end as one call: read spec files, parse, analyse.

Every error of every file is collected before anything is raised, so one run
reports all of them.
"""

from __future__ import annotations

from pathlib import Path

from dsl import ast as A
from dsl.errors import Diagnostic, SpecError
from dsl.parser import parse_bytes

from . import model as M
from .semantic import analyse


def load(paths: list[str | Path]) -> tuple[M.ProgramM, dict[str, str]]:
    """Parse and check ``paths``. Returns the checked program and the source
    text of each file; raises SpecError (with the sources attached)."""
    files: list[A.SpecFile] = []
    sources: dict[str, str] = {}
    diags: list[Diagnostic] = []
    for p in paths:
        path = str(p)
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            diags.append(Diagnostic(f"cannot read spec: {e.strerror or e}", A.Span(path, 1, 1, 1, 1)))
            continue
        try:
            text, spec, file_diags = parse_bytes(data, path)
        except SpecError as e:
            diags.extend(e.diagnostics)
            continue
        sources[path] = text
        if not text.strip() or not spec.apps and not file_diags:
            diags.append(Diagnostic("no apps in this file", A.Span(path, 1, 1, 1, 1),
                                    "a spec defines one or more apps: app NAME { ... }"))
        diags.extend(file_diags)
        files.append(spec)
    try:
        program = analyse(files, sources, prior=diags)
    except SpecError as e:
        e.sources = sources
        raise
    return program, sources
