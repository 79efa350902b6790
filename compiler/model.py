"""The checked model: what semantic analysis hands to the IR builder.

Names are resolved (fields, layers, stats, params), every expression has a kind,
units are applied (durations in nanoseconds, sizes as counts) and defaults are
filled in. Nodes keep their source spans so that the generated C can name the
spec line each block came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dsl.ast import Span
from dsl.fields import Field, Kind


# ---- typed expressions --------------------------------------------------------

@dataclass(frozen=True)
class FieldE:
    field: Field
    span: Span

    @property
    def kind(self) -> Kind:
        return self.field.kind


@dataclass(frozen=True)
class LayerE:
    """``tcp`` alone: the packet has a TCP header."""
    layer: str
    span: Span
    kind: Kind = Kind.BOOL


@dataclass(frozen=True)
class ConstE:
    """An integer, boolean or address constant. Addresses are packed bytes in
    network order, already widened to the field's kind (IPv4 in an ``ip``
    comparison becomes v4-mapped)."""
    kind: Kind
    value: Union[int, bool, bytes]
    span: Span


@dataclass(frozen=True)
class PrefixE:
    kind: Kind           # IP4, IP6 or IP
    network: bytes
    length: int          # prefix length in bits of ``network``
    span: Span


@dataclass(frozen=True)
class RangeE:
    lo: int
    hi: int
    span: Span


@dataclass(frozen=True)
class ParamE:
    app: str
    name: str
    span: Span
    kind: Kind = Kind.INT


@dataclass(frozen=True)
class StatValueE:
    """The value ``member`` of stat ``stat`` for a key built from the current
    packet: the stat's own key fields, or ``key`` when written stat[...]."""
    app: str
    stat: str
    member: str
    key: tuple[FieldE, ...]
    span: Span
    kind: Kind = Kind.INT


@dataclass(frozen=True)
class StatSizeE:
    app: str
    stat: str
    span: Span
    kind: Kind = Kind.INT


@dataclass(frozen=True)
class ArithE:
    op: str                       # "+" "-" "*" "/" or "&" (bitwise and)
    left: "TExpr"
    right: "TExpr"
    span: Span
    kind: Kind = Kind.INT


@dataclass(frozen=True)
class CmpE:
    op: str
    left: "TExpr"
    right: "TExpr"
    span: Span
    kind: Kind = Kind.BOOL


@dataclass(frozen=True)
class InE:
    left: "TExpr"
    items: tuple[Union[ConstE, PrefixE, RangeE], ...]
    span: Span
    kind: Kind = Kind.BOOL


@dataclass(frozen=True)
class AndE:
    operands: tuple["TExpr", ...]
    span: Span
    kind: Kind = Kind.BOOL


@dataclass(frozen=True)
class OrE:
    operands: tuple["TExpr", ...]
    span: Span
    kind: Kind = Kind.BOOL


@dataclass(frozen=True)
class NotE:
    operand: "TExpr"
    span: Span
    kind: Kind = Kind.BOOL


TExpr = Union[FieldE, LayerE, ConstE, ParamE, StatValueE, StatSizeE, ArithE, CmpE, InE,
              AndE, OrE, NotE]


# ---- statistics ------------------------------------------------------------------

@dataclass(frozen=True)
class AggregateM:
    func: str                       # count sum min max distinct hist cms
    args: tuple[FieldE, ...]
    name: str                       # alias or default name: count, sum_pkt_len, ...
    options: tuple[tuple[str, int], ...]   # registers / width / depth, defaults filled in
    span: Span

    def option(self, name: str) -> int:
        return dict(self.options)[name]


@dataclass(frozen=True)
class StatM:
    app: str
    name: str
    kind: str                       # "aggregate" | "track"
    aggregates: tuple[AggregateM, ...]
    key: tuple[FieldE, ...]
    where: TExpr | None
    window_ns: int | None
    size: int                       # max entries (keyed) or 1 (unkeyed)
    on_full: str                    # "lru" | "count"
    span: Span
    # track tables only
    open_when: TExpr | None = None
    close_when: TExpr | None = None
    expire_ns: int | None = None

    @property
    def members(self) -> list[str]:
        return [a.name for a in self.aggregates]


# ---- T3 -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RateM:
    count: int
    per_ns: int
    text: str


@dataclass(frozen=True)
class SendPacketM:
    fields: tuple[FieldE, ...]
    limit: RateM
    span: Span


@dataclass(frozen=True)
class SendSummaryM:
    every_ns: int
    limit: RateM | None
    span: Span


@dataclass(frozen=True)
class EnableM:
    app: str
    duration_ns: int
    span: Span


@dataclass(frozen=True)
class AlertM:
    message: str
    limit: RateM
    span: Span


ActionM = Union[SendPacketM, SendSummaryM, EnableM, AlertM]


@dataclass(frozen=True)
class RuleM:
    cond: TExpr
    actions: tuple[ActionM, ...]
    span: Span


# ---- apps ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamM:
    app: str
    name: str
    default: int
    span: Span


@dataclass(frozen=True)
class AppM:
    name: str
    file: str
    mode: str                                   # "always" | "on_demand"
    select: TExpr | None                        # None: every packet
    stats: tuple[StatM, ...]
    rules: tuple[RuleM, ...]
    params: tuple[ParamM, ...]
    asl: str | None
    guaranteed_layers: frozenset[str]
    span: Span
    asl_span: Span | None = None                # where asl "..." is written

    def stat(self, name: str) -> StatM | None:
        return next((s for s in self.stats if s.name == name), None)


@dataclass(frozen=True)
class ProgramM:
    apps: tuple[AppM, ...]
    notes: tuple = field(default_factory=tuple)      # dsl.errors.Diagnostic with severity "note"

    def app(self, name: str) -> AppM | None:
        return next((a for a in self.apps if a.name == name), None)
