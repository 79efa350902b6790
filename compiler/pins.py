"""Which maps outlive a program, and the names they are pinned under.

A running instance keeps its state in maps pinned in bpffs (runtime/deploy/pindir.py),
so that the next program of the same instance (an app added, removed or changed:
runtime/deploy/) opens the same maps by path and counts on where the last one
stopped. A map's pin name is its name, its schema fingerprint and its size,
``<name>-<fingerprint>-<entries>``: a program whose map has the same identity, byte
layout and size reuses it; one whose layout changed gets a new map under a new name (its
values are migrated into it), never the old bytes read with the new layout (BCC opens
whatever is pinned at a path without comparing layouts).

Pinned: every statistics map (with a track's bucket array and a sketch's header),
the counter array (its fingerprint is the counters' names), the per-interface
counters and the filters (their layouts are the ABI's). Not pinned, because user space
sets them by name on each new program (runtime/deploy/carry.py) or the program fills
them itself: params, the enable bits, rate limiters, `in` sets, the scratch and zero
maps, the program array and the ring buffer.

The generated C declares these maps with ``XM_MAP(..., "<pin name>")``: pinned under
``XM_PIN_DIR`` when the loader defines it (a live instance), the program's own map
otherwise (replay, tests, benchmarks).
"""

from __future__ import annotations

from . import abi
from .identity import fingerprint
from .plan import Plan

COUNTERS_MAP = "xm_counters"


def _abi_pin(name: str, *structs) -> str:
    return f"{name}-{fingerprint(*[s.to_json() for s in structs])}"


def pins(plan: Plan) -> dict[str, str]:
    """C map name -> pin name, for every map that outlives the program."""
    out: dict[str, str] = {COUNTERS_MAP: f"{COUNTERS_MAP}-{fingerprint(list(plan.counters))}"}
    for m in plan.maps:
        tag = f"{m.fingerprint}-{m.entries}"      # a map of another size is another map
        out[m.name] = f"{m.name}-{tag}"
        if m.kind == "track":
            out[f"{m.name}_b"] = f"{m.name}_b-{tag}"
        elif m.kind == "hll":
            out[f"{m.name}_hdr"] = f"{m.name}_hdr-{tag}"
    out[abi.BLOCKLIST_MAP] = _abi_pin(abi.BLOCKLIST_MAP, abi.BLOCK_KEY, abi.BLOCK_VALUE) + f"-{abi.BLOCKLIST_MAX}"
    out[abi.BLOCKHASH_MAP] = _abi_pin(abi.BLOCKHASH_MAP, abi.BLOCK_KEY, abi.BLOCK_VALUE) + f"-{abi.BLOCKLIST_MAX}"
    out[abi.BLOCKBITS_MAP] = f"{abi.BLOCKBITS_MAP}-{abi.BLOCKBITS_WORDS}"
    out[abi.FILTER_MAP] = _abi_pin(abi.FILTER_MAP, abi.FILTER_STATE)
    out[abi.IFACES_MAP] = _abi_pin(abi.IFACES_MAP, abi.IFACE_VALUE) + f"-{abi.IFACES_MAX}"
    return out
