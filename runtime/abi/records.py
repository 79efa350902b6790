"""Keys and event records: C structs of the manifest's layouts, decoded.

A layout is a struct of the manifest (``{"size", "members": [{"name",
"offset", "size", "ctype", "role", "field", "kind"}]}``); members whose role
is ``field`` carry a packet field. Addresses become text (IPv4 for v4-mapped
addresses), numbers integers, flags booleans.

``EventDecoder(manifest)`` decodes ring buffer records as ``decode_event`` does,
with each action's layout compiled once into one ``struct.Struct`` and a
converter per member: the live ASL host decodes every record it receives.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct

from .manifest import Manifest

_UNPACK = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
_EVENT_HEAD = struct.Struct("<QII")          # ts, action, rule: the first members of every record


def _ip6_text(b: bytes) -> str:
    """As ipaddress writes it, with inet_ntop; but where glibc writes an embedded
    IPv4 address (``::ffff:1.2.3.4``, ``::1.2.3.4``), which ipaddress does not."""
    if b[:10] == _ZERO10 and b[10:12] in (b"\0\0", b"\xff\xff"):
        return str(ipaddress.IPv6Address(b))
    return _ntop(_AF_INET6, b)


_ZERO10 = bytes(10)
_V4MAPPED = bytes(10) + b"\xff\xff"
_AF_INET, _AF_INET6, _ntop = socket.AF_INET, socket.AF_INET6, socket.inet_ntop


def _any_ip_text(b: bytes) -> str:
    return _ntop(_AF_INET, b) if len(b) == 4 else _ip6_text(b)


def _ip_text(b: bytes) -> str:
    """A family-neutral address (ip.src, ip.dst): IPv4 text when v4-mapped."""
    return _ntop(_AF_INET, b[12:]) if b[:12] == _V4MAPPED else _any_ip_text(b)


def _mac_text(b: bytes) -> str:
    return b.hex(":")


_ADDRESS_TEXT = {"mac": _mac_text, "ip": _ip_text}
ADDRESS_KINDS = ("mac", "ip", "ip4", "ip6")
# What compiled readers convert addresses with: the same text through an LRU cache
# (functools', in C). Formatting an address costs about 1 us here, a cache hit 0.06 us,
# and the records of an attack repeat few addresses; spoofed sources miss and cost
# the formatting, as without the cache.
ADDRESS_CACHE = 1 << 16
_CACHED_TEXT = {k: functools.lru_cache(maxsize=ADDRESS_CACHE)(_ADDRESS_TEXT.get(k, _any_ip_text))
                for k in ADDRESS_KINDS}


def addr_text(kind: str, b: bytes) -> str:
    """An address as text: a MAC as ``02:00:5e:00:00:01``, an IP address as
    ``ipaddress`` writes it (IPv4 for a v4-mapped ``ip`` field)."""
    return _ADDRESS_TEXT.get(kind, _any_ip_text)(b)


def decode_member(m: dict, data: bytes, base: int = 0):
    raw = data[base + m["offset"]: base + m["offset"] + m["size"]]
    if m.get("kind") in ADDRESS_KINDS:
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
    """A ring buffer record as the event the runtime hands on (see EventDecoder)."""
    return EventDecoder(manifest)(data)


class EventDecoder:
    """Ring buffer records as the events the runtime hands on:
    ``{"ts", "app", "rule", "action", "type"}`` plus ``fields`` (packet:
    {field: value} in the record's order, as ``decode_fields`` reads them),
    ``message`` (alert) or ``enabled`` (enable). Each action's layout is compiled
    once (``compile_reader``); a record of an action the program does not have
    raises ValueError."""

    def __init__(self, manifest: Manifest | dict):
        self._by_action = {a: _event_decoder(ev) for a, ev in Manifest.of(manifest).events.items()}

    def __call__(self, data: bytes) -> dict:
        ts, action, rule = _EVENT_HEAD.unpack_from(data, 0)
        try:
            decode = self._by_action[action]
        except KeyError:
            raise ValueError(f"a ring buffer record of action {action}, which this program does not have") from None
        return decode(ts, rule, data)


def _event_decoder(ev):
    head = {"app": ev.app, "action": ev.action, "type": ev.type}
    if ev.type == "packet":
        fields = compile_reader(ev.record)
        return lambda ts, rule, data: {"ts": ts, "app": head["app"], "rule": rule, "action": head["action"],
                                       "type": "packet", "fields": fields(data)}
    extra = {"message": ev.message} if ev.type == "alert" else {"enabled": ev.enables} if ev.type == "enable" else {}
    return lambda ts, rule, data: {"ts": ts, "app": head["app"], "rule": rule, "action": head["action"],
                                   "type": head["type"], **extra}


def compile_reader(st: dict, names: list[str] | None = None, into: type | None = None):
    """A function of a record (or key) of layout ``st`` that decodes it at once:
    with ``names`` None, ``decode_fields(st, ·)`` (a dict of its field members);
    else the tuple of the members ``names`` (member names: ``ts``, ``ip_src``, ...)
    in that order, made an ``into`` (a tuple subclass: a NamedTuple) when given. One ``struct`` unpacks every member it reads; addresses and
    flags are converted as ``decode_member`` does. The function is generated as
    Python source (as Jinja2 compiles a template): one call per record, no loop."""
    members = {m["name"]: m for m in st["members"]}
    wanted = [m for m in st["members"] if m["role"] == "field"] if names is None else [members[n] for n in names]
    fmt, at, env = ["<"], 0, {}
    read = {}                                  # member name -> its variable, in offset order
    for m in sorted({m["name"]: m for m in wanted}.values(), key=lambda m: m["offset"]):
        if m["offset"] > at:
            fmt.append(f"{m['offset'] - at}x")
        kind = m.get("kind")
        var = f"v{len(read)}"
        if kind in ADDRESS_KINDS or m["ctype"].endswith("]"):
            fmt.append(f"{m['size']}s")
            if kind in ADDRESS_KINDS:
                env[f"c{len(read)}"] = _CACHED_TEXT[kind]
                var = f"c{len(read)}({var})"
        else:
            fmt.append(_UNPACK[m["size"]][1])
            if kind == "bool":
                var = f"{var} != 0"
        read[m["name"]] = var
        at = m["offset"] + m["size"]
    env["unpack"] = struct.Struct("".join(fmt)).unpack_from
    vs = ", ".join(f"v{i}" for i in range(len(read))) + ("," if len(read) == 1 else "")
    if names is None:
        body = "{" + ", ".join(f"{m['field']!r}: {read[m['name']]}" for m in wanted) + "}"
    else:
        body = "(" + ", ".join(read[n] for n in names) + ("," if len(names) == 1 else "") + ")"
        if into is not None:
            env["new"], env["into"] = tuple.__new__, into
            body = f"new(into, {body})"
    src = f"def read(data):\n    {vs} = unpack(data)\n    return {body}\n" if read else f"def read(data):\n    return {body}\n"
    exec(compile(src, f"<reader of {st.get('name', 'a layout')}>", "exec"), env)
    return env["read"]


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


def prefix_mask_words(prefixlen: int) -> tuple[int, int, int, int]:
    """The mask of a 16-byte address's first ``prefixlen`` bits as the program loads it:
    four 32-bit words of the bytes in network order, read in host order."""
    ones = ((1 << 128) - 1) ^ ((1 << (128 - prefixlen)) - 1)
    return struct.unpack("=4I", ones.to_bytes(16, "big"))


# struct xm_filter (compiler/abi.py FILTER_STATE): entries, flags, trie_longest, n_lens,
# n_lens_v4, n_ifaces, then lens[lens_max] and masks[4 * lens_max]
_FILTER_HEAD = struct.Struct("=QQIIII")
_FILTER_IFACES_AT = 28


def encode_filter_state(entries: int, flags: int, trie_longest: int, lens, lens_max: int, n_ifaces: int = 0) -> bytes:
    """struct xm_filter: entries, flags, the trie's longest prefix length, the interfaces
    counted, and the hash map's lengths (longest first) with their masks. An IPv4 source
    tries those of 96 bits and more (an IPv4 /n is 96 + n; user space blocks no IPv6
    prefix holding IPv4 addresses)."""
    lens = sorted(lens, reverse=True)
    if len(lens) > lens_max:
        raise ValueError(f"at most {lens_max} prefix lengths in the hash map, not {len(lens)}")
    n_v4 = sum(1 for n in lens if n >= 96)
    padded = lens + [0] * (lens_max - len(lens))
    masks = [w for n in lens for w in prefix_mask_words(n)] + [0] * (4 * (lens_max - len(lens)))
    return (_FILTER_HEAD.pack(entries, flags, trie_longest, len(lens), n_v4, n_ifaces)
            + struct.pack(f"={lens_max}I{4 * lens_max}I", *padded, *masks))


def decode_filter_state(data: bytes, lens_max: int) -> tuple[int, int, int, tuple[int, ...]]:
    """(entries, flags, trie_longest, lens) of struct xm_filter."""
    entries, flags, trie_longest, n, _, _ = _FILTER_HEAD.unpack_from(data)
    lens = struct.unpack_from(f"={lens_max}I", data, _FILTER_HEAD.size)[:n]
    return entries, flags, trie_longest, tuple(lens)


def filter_state_ifaces(data: bytes) -> int:
    """struct xm_filter's n_ifaces: the interfaces the program counts frames of."""
    return struct.unpack_from("=I", data, _FILTER_IFACES_AT)[0]


def with_filter_state_ifaces(data: bytes, n_ifaces: int) -> bytes:
    """struct xm_filter ``data`` with its n_ifaces set (the rest as it is)."""
    return data[:_FILTER_IFACES_AT] + struct.pack("=I", n_ifaces) + data[_FILTER_IFACES_AT + 4:]


def derive_counters(names, values: list[int]) -> list[int]:
    """The counters as read, with the two the program does not count itself (one count a
    packet, not three): ``frames``, the sum of the parse outcomes, and ``verdict.pass``,
    the frames not dropped (``verdict.drop``; a failed tail call passes the frame too)."""
    out = list(values)
    at = {n: i for i, n in enumerate(names)}
    if "frames" in at:
        out[at["frames"]] = sum(v for n, v in zip(names, values) if n.startswith("parse."))
        if "verdict.pass" in at:
            out[at["verdict.pass"]] = out[at["frames"]] - values[at["verdict.drop"]]
    return out
