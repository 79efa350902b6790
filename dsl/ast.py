"""The typed syntax tree of a .mon file.

Every node carries the ``Span`` it was parsed from, so that every later pass can
point at the exact source text when it reports a problem. Nodes are plain frozen
dataclasses: passes build new structures rather than mutate these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Span:
    """A region of one source file. Lines and columns are 1-based; end_col is
    the column just past the last character (as in Lark)."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Span("<none>", 1, 1, 1, 1)


# ---- literals ---------------------------------------------------------------

@dataclass(frozen=True)
class Number:
    """A number as written: ``magnitude`` and ``unit`` ("" for none). What the
    unit means depends on where the number stands (a window takes a duration,
    a size a count): dsl/units.py converts, semantic analysis checks."""

    magnitude: int | float
    unit: str
    text: str
    span: Span

    @property
    def value(self) -> int:
        """The plain integer (only meaningful when ``unit`` is empty)."""
        return int(self.magnitude)


@dataclass(frozen=True)
class Addr:
    """An IPv4/IPv6 address or prefix, or a MAC address. ``packed`` holds the
    address bytes in network order; ``prefix`` is None for a plain address."""

    family: str          # "ip4", "ip6" or "mac"
    packed: bytes
    prefix: int | None
    text: str
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Range:
    lo: Number
    hi: Number
    span: Span


# ---- expressions ------------------------------------------------------------

@dataclass(frozen=True)
class Ref:
    """A dotted name: a field (``tcp.syn``), a layer (``tcp``), a stat
    (``syns``) or a stat's value (``per_dst.bytes``). Semantic analysis
    decides which."""

    parts: tuple[str, ...]
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class IndexedRef:
    """``stat[key fields].value``: another stat read with a key taken from the
    current packet's fields."""

    stat: Ref
    key: tuple[Ref, ...]
    member: str | None
    span: Span


@dataclass(frozen=True)
class ParamRef:
    name: str
    default: Number | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class SizeOf:
    stat: str
    span: Span
    stat_span: Span


@dataclass(frozen=True)
class Arith:
    op: str                       # "+" "-" "*" "/" or "&" (bitwise and)
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class InSet:
    left: "Expr"
    items: tuple[Union[Number, Addr, Range, Bool], ...]
    negated: bool
    span: Span


@dataclass(frozen=True)
class BoolOp:
    op: str                       # "and" | "or"
    operands: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Not:
    operand: "Expr"
    span: Span


Expr = Union[Number, Addr, Bool, Ref, IndexedRef, ParamRef, SizeOf, Arith, Compare,
             InSet, BoolOp, Not]


# ---- T2 ---------------------------------------------------------------------

@dataclass(frozen=True)
class Aggregate:
    func: str
    args: tuple[Ref, ...]
    options: tuple[tuple[str, Number], ...]    # keyword arguments, e.g. width=2048
    alias: str | None
    span: Span
    func_span: Span
    alias_span: Span | None = None


@dataclass(frozen=True)
class StatOptions:
    key: tuple[Ref, ...] = ()
    key_span: Span | None = None
    where: Expr | None = None
    window: Number | None = None
    size: Number | None = None
    on_full: str | None = None
    on_full_span: Span | None = None


@dataclass(frozen=True)
class AggregateStat:
    name: str
    aggregates: tuple[Aggregate, ...]
    opts: StatOptions
    span: Span
    name_span: Span


@dataclass(frozen=True)
class TrackStat:
    name: str
    key: tuple[Ref, ...]
    open_when: Expr
    close_when: Expr
    expire: Number
    opts: StatOptions
    span: Span
    name_span: Span


Stat = Union[AggregateStat, TrackStat]


# ---- T3 ---------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    count: int
    per: str             # unit as written: "s", "min", ...
    per_ns: int
    span: Span


@dataclass(frozen=True)
class SendPacket:
    fields: tuple[Ref, ...]
    limit: Rate | None
    span: Span


@dataclass(frozen=True)
class SendSummary:
    every: Number | None
    limit: Rate | None
    span: Span


@dataclass(frozen=True)
class Enable:
    app: str
    duration: Number
    span: Span
    app_span: Span


@dataclass(frozen=True)
class Alert:
    message: str
    limit: Rate | None
    span: Span


Action = Union[SendPacket, SendSummary, Enable, Alert]


@dataclass(frozen=True)
class Rule:
    cond: Expr
    actions: tuple[Action, ...]
    span: Span


# ---- apps -------------------------------------------------------------------

@dataclass(frozen=True)
class ParamDecl:
    name: str
    default: Number
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Mode:
    value: str
    span: Span


@dataclass(frozen=True)
class App:
    name: str
    span: Span
    name_span: Span
    mode: Mode | None = None
    selects: tuple[Expr, ...] = ()
    stats: tuple[Stat, ...] = ()
    rules: tuple[Rule, ...] = ()
    params: tuple[ParamDecl, ...] = ()
    asl: str | None = None
    asl_span: Span | None = None
    blocks: tuple[tuple[str, Span], ...] = ()   # each t1/t2/t3/mode/asl seen, for duplicate checks


@dataclass(frozen=True)
class SpecFile:
    path: str
    apps: tuple[App, ...] = field(default_factory=tuple)
    incomplete: bool = False     # some app of the file did not parse and is missing from ``apps``
