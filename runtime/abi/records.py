"""Keys and event records: C structs of the manifest's layouts, decoded.

A layout is a struct of the manifest (``{"size", "members": [{"name",
"offset", "size", "ctype", "role", "field", "kind"}]}``); members whose role
is ``field`` carry a packet field. Addresses become text (IPv4 for v4-mapped
addresses), numbers integers, flags booleans.
"""

from __future__ import annotations

import ipaddress
import struct

from .manifest import Manifest

_UNPACK = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
_EVENT_HEAD = struct.Struct("<QII")          # ts, action, rule: the first members of every record


def addr_text(kind: str, b: bytes) -> str:
    if kind == "mac":
        return ":".join(f"{x:02x}" for x in b)
    if kind == "ip" and b[:12] == b"\0" * 10 + b"\xff\xff":
        return str(ipaddress.IPv4Address(b[12:]))
    if len(b) == 4:
        return str(ipaddress.IPv4Address(b))
    return str(ipaddress.IPv6Address(b))


def decode_member(m: dict, data: bytes, base: int = 0):
    raw = data[base + m["offset"]: base + m["offset"] + m["size"]]
    if m.get("kind") in ("mac", "ip", "ip4", "ip6"):
        return addr_text(m["kind"], raw)
    if m["ctype"].endswith("]"):
        return raw
    return struct.unpack(_UNPACK[m["size"]], raw)[0]


def decode_fields(st: dict, data: bytes) -> dict:
    """A key or event record as {field name: value}, in the struct's order."""
    out = {}
    for m in st["members"]:
        if m["role"] == "field":
            v = decode_member(m, data)
            out[m["field"]] = bool(v) if m.get("kind") == "bool" else v
    return out


def decode_event(manifest: Manifest, data: bytes) -> dict:
    """A ring buffer record as the event the runtime hands on:
    ``{"ts", "app", "rule", "action", "type"}`` plus ``fields`` (packet),
    ``message`` (alert) or ``enabled`` (enable)."""
    ts, action, rule = _EVENT_HEAD.unpack_from(data, 0)
    ev = manifest.events[action]
    out = {"ts": ts, "app": ev.app, "rule": rule, "action": action, "type": ev.type}
    if ev.type == "packet":
        out["fields"] = decode_fields(ev.record, data)
    if ev.type == "alert":
        out["message"] = ev.message
    if ev.type == "enable":
        out["enabled"] = ev.enables
    return out


# ---- the params and control blocks --------------------------------------------------

def decode_u64s(data: bytes, n: int) -> list[int]:
    """The first ``n`` u64 of a block (``struct xm_params { u64 v[]; }``)."""
    return list(struct.unpack_from(f"<{n}Q", data))


def encode_u64s(values, size: int | None = None) -> bytes:
    """u64 values, zero-padded to ``size`` bytes (default: no padding);
    OverflowError for a value that is not a u64."""
    for v in values:
        if not 0 <= v < 1 << 64:
            raise OverflowError(f"{v} does not fit in 64 bits")
    data = struct.pack(f"<{len(values)}Q", *values)
    return data if size is None else data + bytes(size - len(data))


def decode_control(data: bytes, n_bits: int) -> tuple[int, int, list[int]]:
    """(mask, next_change, until[n_bits]) of the control block (the manifest's
    ``control.value``: ``struct { u64 mask; u64 next_change; u64 until[n_bits]; }``)."""
    v = decode_u64s(data, 2 + n_bits)
    return v[0], v[1], v[2:]


def encode_control(mask: int, next_change: int, until, size: int | None = None) -> bytes:
    return encode_u64s([mask, next_change, *until], size)
