#!/usr/bin/env python3
"""Rewrite the expected outputs of the golden-file tests (tests/test_golden.py).

For every ``tests/golden/NAME.mon`` this compiles that file alone, with its path
relative to the repository root (so no absolute path ends up in the output),
and writes next to it:

    NAME.c              the generated XDP C program
    NAME.manifest.json  the manifest
    NAME.ir.txt         the merged IR (``compiler.ir.dump``, as ``xdpmon compile --dump ir``)
    NAME.asl.txt        the ASL stub of every app, as ``xdpmon compile --dry-run`` prints them

Usage (from anywhere):

    make golden                           # all of them
    .venv/bin/python tools/update_golden.py [NAME ...]
    .venv/bin/python tools/update_golden.py --check    # exit 1 if any is out of date

Then review what changed with ``git diff tests/golden/``: the diff is the change
in generated code that the compiler change caused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SUFFIXES = (".c", ".manifest.json", ".ir.txt", ".asl.txt")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def specs() -> list[Path]:
    return sorted(GOLDEN.glob("*.mon"))


def expected_outputs(spec: Path) -> dict[str, str]:
    """{suffix: text} of one golden spec, compiled from the repository root."""
    from compiler import ir
    from compiler.driver import compile_files

    rel = spec.resolve().relative_to(ROOT).as_posix()
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        art = compile_files([rel])
    finally:
        os.chdir(old)
    stubs = "".join(f"# ==== ASL stub: {name} ====\n{text}" for name, text in sorted(art.stubs.items()))
    return {".c": art.c, ".manifest.json": art.manifest_json(), ".ir.txt": ir.dump(art.ir), ".asl.txt": stubs}


def output_path(spec: Path, suffix: str) -> Path:
    return spec.with_name(spec.stem + suffix)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="golden spec names (default: all)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if an expected file differs")
    args = ap.parse_args(argv)
    chosen = specs()
    if args.names:
        chosen = [s for s in chosen if s.stem in args.names]
        missing = set(args.names) - {s.stem for s in chosen}
        if missing:
            print(f"no such golden spec: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    stale = 0
    for spec in chosen:
        for suffix, text in expected_outputs(spec).items():
            path = output_path(spec, suffix)
            old = path.read_text() if path.exists() else None
            rel = path.relative_to(ROOT)
            if old == text:
                continue
            stale += 1
            if args.check:
                print(f"{rel}: out of date")
            else:
                path.write_text(text)
                print(f"{rel}: {'updated' if old is not None else 'created'}")
    known = {s.stem for s in specs()}
    for path in sorted(GOLDEN.iterdir()):
        stem = path.name.split(".", 1)[0]
        if path.suffix != ".mon" and stem not in known:
            print(f"{path.relative_to(ROOT)}: no {stem}.mon next to it (remove it?)")
    if args.check:
        return 1 if stale else 0
    print(f"{len(chosen)} golden spec(s), {stale} file(s) written; review with: git diff tests/golden/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
