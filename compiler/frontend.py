"""The front end as one call: read spec files, parse, analyse.

Every error of every file is collected before anything is raised, so one run
reports all of them.
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

from dsl import ast as A
from dsl.errors import Diagnostic, SpecError
from dsl.parser import parse_bytes, read_source

from . import model as M
from .semantic import analyse


def load(paths: list[str | Path], exclude=frozenset()) -> tuple[M.ProgramM, dict[str, str]]:
    """Parse and check ``paths``. Returns the checked program and the source
    text of each file; raises SpecError (with the sources attached). The apps
    named in ``exclude`` are left out (a running instance's ``ctl remove``)."""
    # Parsing allocates many small objects and no cycles worth collecting:
    # the cyclic collector only slows it down (by ~40% on a 1,000-app file).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(paths, frozenset(exclude))
    finally:
        if was_enabled:
            gc.enable()


def _load(paths: list[str | Path], exclude: frozenset) -> tuple[M.ProgramM, dict[str, str]]:
    files: list[A.SpecFile] = []
    sources: dict[str, str] = {}
    diags: list[Diagnostic] = []
    for p in paths:
        path = str(p)
        try:
            data = read_source(path)
        except (OSError, ValueError) as e:     # ValueError: a NUL in the path
            reason = getattr(e, "strerror", None) or str(e)
            diags.append(Diagnostic(f"cannot read spec: {reason}", A.Span(path, 1, 1, 1, 1)))
            continue
        except SpecError as e:               # too large
            diags.extend(e.diagnostics)
            continue
        try:
            text, spec, file_diags = parse_bytes(data, path)
        except SpecError as e:               # not text: nothing more to check in it
            diags.extend(e.diagnostics)
            sources.update(e.sources)
            continue
        sources[path] = text
        if not text.strip() or not spec.apps and not file_diags:
            diags.append(Diagnostic("no apps in this file", A.Span(path, 1, 1, 1, 1),
                                    "a spec defines one or more apps: app NAME { ... }"))
        diags.extend(file_diags)
        if exclude and any(a.name in exclude for a in spec.apps):
            spec = dataclasses.replace(spec, apps=tuple(a for a in spec.apps if a.name not in exclude))
        files.append(spec)
    try:
        program = analyse(files, sources, prior=diags)
    except SpecError as e:
        e.sources = sources
        raise
    return program, sources
