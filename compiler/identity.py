"""Names derived from what a thing is, not from where it came in the input.

A map is named after its kind, its key fields and its full-map policy (plus, for a
track table or an unkeyed sketch, what it tracks or sketches); a slot after its
aggregate, arguments, key, guard predicate, window, options and gate. So adding,
removing or reordering unrelated apps renames nothing, and a runtime can tell the
maps of an old and a new program apart by name (hot add/remove keeps them).
An on-demand app's slot has its app as gate, unless an always-on app keeps the same
statistic (then both read one slot, gate none): adding or removing that app, which is
not unrelated, renames it, since what it counts changes.

An identity is a readable canonical text (``identity``); the name is a short prefix
of its SHA-1 (``name``), lengthened where two identities of one program would share
it. A schema fingerprint hashes a byte layout (``fingerprint``): two maps with the
same name and fingerprint hold interchangeable bytes.
"""

from __future__ import annotations

import hashlib
import json
import os

from . import ir

SHORT = 6                  # hex digits of a name, unless that collides


def digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def pred_texts(preds: list[ir.PredNode]):
    """``text(pid)``: predicate ``pid`` as canonical text, references spelled out
    (normalised and interned predicates have one spelling whatever the order of the
    apps). Each node is spelled once, however many guards share it."""
    memo: dict[int, str] = {}

    def go(p) -> str:
        if isinstance(p, ir.PRef):
            return text(p.id)
        if isinstance(p, (ir.PAnd, ir.POr)):
            op = " and " if isinstance(p, ir.PAnd) else " or "
            return "(" + op.join(go(o) for o in p.operands) + ")"
        if isinstance(p, ir.PNot):
            return f"not {go(p.operand)}"
        return repr(ir.pkey(p))

    def text(pid: int) -> str:
        if pid not in memo:
            memo[pid] = go(preds[pid].pred)
        return memo[pid]
    return text


def fields_text(fields) -> str:
    return ",".join(f.name for f in fields)


def assign(prefix: str, identities: list[str]) -> dict[str, str]:
    """identity -> name ``prefix_<hex>``: the shortest digest prefix (SHORT digits,
    lengthened two at a time) that no other identity of the same list shares."""
    digests = {i: digest(i) for i in dict.fromkeys(identities)}
    # the longest prefix a digest shares with another is the one it shares with a
    # neighbour in sorted order
    order = sorted(digests.values())
    shared = dict.fromkeys(order, 0)
    for a, b in zip(order, order[1:]):
        n = len(os.path.commonprefix([a, b]))
        shared[a] = max(shared[a], n)
        shared[b] = max(shared[b], n)
    names: dict[str, str] = {}
    for ident, d in digests.items():
        n = SHORT
        while n <= shared[d]:
            n += 2
        names[ident] = f"{prefix}_{d[:n]}"
    return names


def fingerprint(*layouts) -> str:
    """A short hash of byte layouts (Struct.to_json() dicts, numbers, strings)."""
    return digest(json.dumps(layouts, sort_keys=True))[:12]
