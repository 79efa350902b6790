"""Byte layouts of everything the kernel and user space exchange.

Keys, map values, event records, the params and control maps, the counter
array: each is laid out here once, with explicit offsets and explicit padding
(hash keys must have zeroed padding), and then (a) rendered as a C struct by
codegen and (b) written to the manifest so that the runtime decodes maps with
``struct`` and derives nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.fields import Field

from . import c_fields, ir


@dataclass(frozen=True)
class Member:
    name: str          # C member name
    offset: int
    size: int          # bytes
    ctype: str         # "__u64", "__u16", "__u8[16]", ...
    role: str          # "field", "epoch", "count", "sum", "min", "max", "hist", "hll_regs", "hll_z",
                       # "hll_zeros", "last_count" ... "last_hll_zeros" (a windowed slot's last
                       # window), "pad", "ts", ...
    field: str | None = None      # dsl field name, for keys and events
    kind: str | None = None       # dsl kind of a field ("int", "ip", "mac", ...)
    slot: str | None = None       # slot this member belongs to
    count: int = 1                # array elements (hist buckets, registers)

    def c_decl(self) -> str:
        if "[" in self.ctype:
            base, n = self.ctype[:-1].split("[")
            return f"{base} {self.name}[{n}];"
        return f"{self.ctype} {self.name};"

    def to_json(self) -> dict:
        d = {"name": self.name, "offset": self.offset, "size": self.size, "ctype": self.ctype, "role": self.role}
        for k in ("field", "kind", "slot"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.count != 1:
            d["count"] = self.count
        return d


@dataclass(frozen=True)
class Struct:
    name: str
    members: tuple[Member, ...]
    size: int

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def to_json(self) -> dict:
        return {"name": self.name, "size": self.size, "members": [m.to_json() for m in self.members]}


def field_ctype(f: Field) -> tuple[str, int]:
    """The C type and size in bytes a field takes in a key or event."""
    cf = c_fields.c_field(f.name)
    if cf.is_array:
        return f"__u8[{cf.nbytes}]", cf.nbytes
    if cf.ctype == "__be32":
        return "__u8[4]", 4          # addresses stay network-order bytes
    size = cf.nbytes
    return {1: "__u8", 2: "__u16", 4: "__u32", 8: "__u64"}[size], size


def member_name(f: Field) -> str:
    return f.name.replace(".", "_")


def _align(off: int, a: int) -> int:
    return (off + a - 1) // a * a


def field_struct(name: str, fields: tuple[Field, ...], head: list[tuple[str, str, int, str]] = ()) -> Struct:
    """A struct of packet fields, largest first (least padding), with explicit
    padding, total size a multiple of 8. ``head`` members come first."""
    members: list[Member] = []
    off = 0
    for mname, ctype, size, role in head:
        off = _align(off, min(size, 8))
        members.append(Member(mname, off, size, ctype, role))
        off += size
    typed = [(f, *field_ctype(f)) for f in fields]
    typed.sort(key=lambda t: (-t[2], t[0].name))
    npad = 0
    for f, ctype, size in typed:
        align = 1 if "[" in ctype else size
        new = _align(off, align)
        if new != off:
            members.append(Member(f"_pad{npad}", off, new - off, f"__u8[{new - off}]", "pad"))
            npad += 1
            off = new
        members.append(Member(member_name(f), off, size, ctype, "field", f.name, f.kind.value))
        off += size
    end = _align(max(off, 1), 8)
    if end != off:
        members.append(Member(f"_pad{npad}", off, end - off, f"__u8[{end - off}]", "pad"))
    return Struct(name, tuple(members), end)


def hist_buckets(f: Field) -> int:
    """log2 buckets of a field: bucket 0 holds 0, bucket b holds [2^(b-1), 2^b)."""
    return f.bits + 1


def epoch_member(slot_name: str) -> str:
    """The member of a windowed slot that holds the window its value is of."""
    return f"{slot_name}_e"


def last_member(name: str) -> str:
    """The member of a windowed slot that keeps ``name``'s final value of the
    window before the slot's current one."""
    return f"{name}_last"


# The members of a windowed slot that are kept for the last window, by role:
# the value itself (count, sum, min, max, hist buckets) or a sketch's estimator
# state (z and zeros; its registers are not kept, the estimate needs only these).
LAST_ROLES = {"count", "sum", "min", "max", "hist", "hll_z", "hll_zeros"}


def value_struct(m: ir.StatMap) -> Struct:
    """The value of a fused map: its slots, unwindowed first, then by window;
    each windowed slot led by its own epoch (the window its value is of), so
    what one slot holds depends only on the packets that update it, never on
    the other slots (of other apps) that share its map. A windowed slot ends
    with the last window's value (role ``last_`` + the value's role): the
    final value of the window before its epoch's, copied when a packet of a
    new window resets the slot (zero when that window had no packet)."""
    members: list[Member] = []
    off = 0
    windows = sorted({s.window_ns for s in m.slots}, key=lambda w: w or 0)
    for w in windows:
        for s in (s for s in m.slots if s.window_ns == w):
            if w is not None:
                members.append(Member(epoch_member(s.name), off, 8, "__u64", "epoch", slot=s.name))
                off += 8
            own: list[Member] = []
            if s.func in ("count", "sum", "min", "max"):
                own.append(Member(s.name, off, 8, "__u64", s.func, slot=s.name))
                off += 8
            elif s.func == "hist":
                n = hist_buckets(s.args[0])
                own.append(Member(s.name, off, 8 * n, f"__u64[{n}]", "hist", slot=s.name, count=n))
                off += 8 * n
            elif s.func == "distinct":
                regs = dict(s.options)["registers"]
                own.append(Member(f"{s.name}_z", off, 8, "__u64", "hll_z", slot=s.name))
                own.append(Member(f"{s.name}_zeros", off + 8, 8, "__u64", "hll_zeros", slot=s.name))
                # the estimate of z and zeros, kept as a register grows (rules read it)
                own.append(Member(f"{s.name}_est", off + 16, 8, "__u64", "hll_est", slot=s.name))
                own.append(Member(f"{s.name}_regs", off + 24, regs, f"__u8[{regs}]", "hll_regs",
                                  slot=s.name, count=regs))
                off += 24 + _align(regs, 8)
            else:
                raise AssertionError(f"{s.func} in a fused map")
            members += own
            if w is not None:
                for mb in own:
                    if mb.role in LAST_ROLES:
                        members.append(Member(last_member(mb.name), off, mb.size, mb.ctype, "last_" + mb.role,
                                              slot=s.name, count=mb.count))
                        off += mb.size
    if not members:
        members.append(Member("_unused", 0, 8, "__u64", "pad"))
        off = 8
    return Struct(f"xm_v_{m.name}", tuple(members), off)


# The members every event record starts with.
EVENT_HEAD = [("ts", "__u64", 8, "ts"), ("action", "__u32", 4, "action"), ("rule", "__u32", 4, "rule")]
