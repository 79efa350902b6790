"""The runtime's layout rules: which subpackage may import which.

Every runtime module lives in a subpackage (runtime/__init__.py lists them);
each imports only the subpackages its package docstring allows, and only
``engines``, ``control`` and ``cli`` may import the compiler side (``compiler``, ``dsl``,
``codegen_templates``). The imports of every module are read with ``ast``
(also those inside functions), relative ones resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime"
COMPILER_SIDE = {"compiler", "dsl", "codegen_templates"}

MAY_IMPORT = {
    "abi": set(),
    "capture": set(),
    "dataplane": {"abi"},
    "engines": {"abi", "capture", "dataplane"},
    "asl": {"abi", "control"},
    "control": {"abi", "dataplane"},
    "export": {"abi"},
    "traffic": {"dataplane"},
    "ui": {"abi"},
    "deploy": {"abi", "dataplane", "engines", "control"},
    "monitor": {"abi", "dataplane", "engines", "asl", "control", "export", "ui", "deploy"},
    "demo": {"monitor", "traffic", "control", "ui"},
    "cli": {"abi", "capture", "dataplane", "engines", "asl", "control", "export", "ui", "monitor", "demo", "deploy"},
}
MAY_IMPORT_COMPILER = {"engines", "control", "cli", "deploy"}


RUNTIME_PACKAGES = set(MAY_IMPORT)


def imported(rel: Path, source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the module at
    ``rel`` (a path relative to the repository root)."""
    package = list(rel.with_suffix("").parts[:-1])      # a module's package; an __init__'s own
    out = []
    for node in ast.walk(ast.parse(source, str(rel))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module
            if node.level:
                mod = ".".join(package[: len(package) - node.level + 1] + ([mod] if mod else []))
            if node.module is None:       # from . import a, b: modules of the package
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def violations(rel: Path, source: str) -> list[str]:
    if len(rel.parts) < 3:
        return [] if rel.name == "__init__.py" else [f"{rel}: a runtime module outside the subpackages"]
    pkg = rel.parts[1]
    if pkg not in MAY_IMPORT:
        return [f"{rel}: runtime/{pkg} is not a known subpackage (add it to runtime/__init__.py and this test)"]
    out = []
    for line, mod in imported(rel, source):
        parts = mod.split(".")
        if parts[0] == "runtime":
            target = parts[1] if len(parts) > 1 else "runtime"
            if target != pkg and target not in MAY_IMPORT[pkg]:
                out.append(f"{rel}:{line}: runtime.{pkg} may not import {mod}")
        elif parts[0] in COMPILER_SIDE and pkg not in MAY_IMPORT_COMPILER:
            out.append(f"{rel}:{line}: runtime.{pkg} may not import {mod} (the compiler side)")
    return out


MODULES = sorted(p.relative_to(ROOT) for p in RUNTIME.rglob("*.py"))


@pytest.mark.parametrize("rel", MODULES, ids=str)
def test_imports_follow_the_layout(rel):
    assert violations(rel, (ROOT / rel).read_text()) == []


def test_every_subpackage_is_known():
    found = {p.name for p in RUNTIME.iterdir() if (p / "__init__.py").is_file()}
    assert found == RUNTIME_PACKAGES


@pytest.mark.parametrize("pkg", sorted(MAY_IMPORT))
def test_docstrings_say_what_a_package_may_import(pkg):
    doc = ast.get_docstring(ast.parse((RUNTIME / pkg / "__init__.py").read_text())) or ""
    assert "May import:" in doc, f"runtime/{pkg}/__init__.py: say what the package owns and what it may import"
    allowed = doc[doc.index("May import:"):]
    if pkg == "cli":
        assert "any runtime package" in allowed
    else:
        for other in MAY_IMPORT[pkg]:
            assert other in allowed, f"runtime/{pkg}/__init__.py does not list {other}"
    overview = ast.get_docstring(ast.parse((RUNTIME / "__init__.py").read_text()))
    assert f"\n    {pkg} " in overview, f"runtime/__init__.py does not describe runtime/{pkg}"


def test_the_check_finds_forbidden_imports():
    rel = Path("runtime/abi/probe.py")
    source = ("from runtime.dataplane.maps import ProgramMaps\nfrom ..engines import base\nfrom . import hll\n"
              "def f():\n    import compiler.ir\n")
    assert violations(rel, source) == [
        f"{rel}:1: runtime.abi may not import runtime.dataplane.maps",
        f"{rel}:2: runtime.abi may not import runtime.engines",
        f"{rel}:5: runtime.abi may not import compiler.ir (the compiler side)",
    ]
    assert violations(Path("runtime/loose.py"), "") == ["runtime/loose.py: a runtime module outside the subpackages"]
    assert violations(Path("runtime/engines/reference/engine.py"), "from compiler import ir\nfrom ..base import Engine\n") == []
