"""Fill the maps of large ``in { ... }`` sets (the manifest's "sets") before the
first packet.

An LPM trie gets one entry per address or prefix (key: prefix length in host
order, then the address bytes in network order), a byte array indexed by value
gets 1 at every member value (ranges expanded), a hash set one entry per value
(8-byte host-order integers, or the 6 bytes of a MAC). What the program then
tests is exactly the set as written (compiler/plan.py: set_plans).
"""

from __future__ import annotations

import struct


def entries(s: dict) -> list[tuple[bytes, bytes]]:
    """(key bytes, value bytes) of every entry of the set ``s``."""
    one = b"\x01"
    out = []
    for it in s["members"]:
        if s["kind"] == "lpm":
            addr = bytes.fromhex(it["lo"])
            plen = it["hi"] if it["kind"] == "prefix" else 8 * len(addr)
            out.append((struct.pack("=I", plen) + addr, one))
        elif s["kind"] == "array":
            lo, hi = (it["lo"], it["hi"]) if it["kind"] == "range" else (it["lo"], it["lo"])
            out += [(struct.pack("=I", v), one) for v in range(lo, min(hi, s["entries"] - 1) + 1)]
        elif s["key_size"] == 6:
            out.append((bytes.fromhex(it["lo"]), one))
        else:
            out.append((struct.pack("=Q", it["lo"]), one))
    return out


def fill(bpf, sets: list[dict]) -> None:
    """Write every entry of every set into the program's maps (bcc.BPF ``bpf``)."""
    for s in sets or ():
        table = bpf[s["name"]]
        for k, v in entries(s):
            table[table.Key.from_buffer_copy(k)] = table.Leaf.from_buffer_copy(v)

