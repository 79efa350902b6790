#!/usr/bin/env python3
"""Print the README's tables of packet fields and layers, from dsl/fields.py.

Usage: .venv/bin/python tools/gen_field_table.py   (paste the output into README.md;
tests/test_readme.py checks that the README holds exactly this text)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsl.fields import FIELDS, LAYERS, Kind  # noqa: E402

KIND_WORDS = {
    Kind.BOOL: "flag",
    Kind.INT: "int",
    Kind.MAC: "MAC",
    Kind.IP4: "IPv4",
    Kind.IP6: "IPv6",
    Kind.IP: "IP (v4-mapped)",
}


def field_table() -> str:
    rows = ["| field | type | bits | layer | meaning |", "| --- | --- | --- | --- | --- |"]
    for f in FIELDS.values():
        kind = KIND_WORDS[f.kind]
        if f.either:
            kind += ", either port"
        rows.append(f"| `{f.name}` | {kind} | {f.bits} | `{f.layer}` | {f.doc} |")
    return "\n".join(rows)


def layer_table() -> str:
    rows = ["| layer | present when the packet has |", "| --- | --- |"]
    for name, doc in LAYERS.items():
        rows.append(f"| `{name}` | {doc} |")
    return "\n".join(rows)


def tables() -> str:
    return layer_table() + "\n\n" + field_table() + "\n"


if __name__ == "__main__":
    sys.stdout.write(tables())
