#!/usr/bin/env python3
"""Print the README's list of reserved names, from compiler/names.py.

Usage: .venv/bin/python tools/gen_reserved_names.py   (paste the output into README.md;
tests/test_readme.py checks that the README holds exactly this text)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compiler.names import C_KEYWORDS, C_RESERVED, PY_KEYWORDS, RESERVED_PREFIXES  # noqa: E402


def _order(name: str):
    """Alphabetical, leading underscores aside, numbers by value (u8 before u16)."""
    parts = re.split(r"(\d+)", name.lstrip("_").lower())
    return [int(p) if p.isdigit() else p for p in parts], name


def _words(names) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names, key=_order))


def reserved_names() -> str:
    return "\n".join([
        f"- C keywords: {_words(C_KEYWORDS)}",
        f"- C type, macro and local names the generated program uses: {_words(C_RESERVED)}",
        f"- Python keywords and soft keywords, and `self`: {_words(PY_KEYWORDS)}",
        f"- prefixes kept for the compiler: {', '.join(f'`{p}`' for p in RESERVED_PREFIXES)}",
    ]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reserved_names())
