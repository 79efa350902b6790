"""compiler/passes/normalize.py: equal conditions must look equal.

Table-driven: an IR predicate tree in, its normal form (as ``ir.pstr`` text)
out. Operands of and/or are sorted by the repr of their structural key, so
``and`` < ``cmp`` < ``in`` < ``layer`` < ``not`` < ``or`` among siblings.
"""

from __future__ import annotations

import random

import pytest

from compiler import ir
from compiler.ir import pstr
from compiler.passes.normalize import normalize
from dsl.fields import FIELDS, Kind

# ---- building IR by hand ----------------------------------------------------------------


def fld(name):
    return ir.VField(FIELDS[name])


def const(v):
    return ir.VConst(Kind.INT, v)


def cmp(name, op, v):
    return ir.PCmp(op, fld(name), const(v))


def rcmp(v, op, name):
    """A comparison written constant-first: ``v op name``."""
    return ir.PCmp(op, const(v), fld(name))


def flag(name, v=True):
    return ir.PCmp("==", fld(name), ir.VConst(Kind.BOOL, v))


def AND(*ops):
    return ir.PAnd(tuple(ops))


def OR(*ops):
    return ir.POr(tuple(ops))


def NOT(op):
    return ir.PNot(op)


def IN(name, *items):
    out = []
    for it in items:
        if isinstance(it, tuple):
            out.append(ir.SetItem("range", it[0], it[1]))
        else:
            out.append(ir.SetItem("eq", it))
    return ir.PIn(fld(name), tuple(out))


L = ir.PLayer
T, F = ir.PTrue(), ir.PFalse()
TCP, UDP, IP = L("tcp"), L("udp"), L("ip")
SYN = flag("tcp.syn")
ACK = flag("tcp.ack")
TTL1 = cmp("ip.ttl", "<=", 1)

# (id, input, expected pstr of the normal form)
CASES = [
    # ---- leaves are kept
    ("layer", TCP, "tcp"),
    ("true", T, "true"),
    ("false", F, "false"),
    ("flag", SYN, "tcp.syn"),
    ("flag-false-not-folded", flag("tcp.syn", False), "tcp.syn == false"),
    ("plain-cmp", cmp("ip.ttl", "<", 3), "ip.ttl < 3"),
    # ---- flattening
    ("flatten-and", AND(TCP, AND(L("udp"), AND(L("icmp"), TTL1))),
     "(ip.ttl <= 1 and icmp and tcp and udp)"),
    ("flatten-or", OR(OR(TCP, UDP), OR(L("icmp"), OR(L("icmp6")))), "(icmp or icmp6 or tcp or udp)"),
    ("and-in-or-not-flattened", OR(AND(TCP, TTL1), UDP), "((ip.ttl <= 1 and tcp) or udp)"),
    ("or-in-and-not-flattened", AND(OR(TCP, UDP), TTL1), "(ip.ttl <= 1 and (tcp or udp))"),
    ("single-operand-and", AND(TCP), "tcp"),
    ("single-operand-or", OR(AND(TCP)), "tcp"),
    # ---- sorting and dedup of operands
    ("sort-and", AND(TCP, TTL1), "(ip.ttl <= 1 and tcp)"),
    ("sort-and-swapped", AND(TTL1, TCP), "(ip.ttl <= 1 and tcp)"),
    ("sort-or", OR(UDP, TCP), "(tcp or udp)"),
    ("dedup-or", OR(UDP, TCP, UDP), "(tcp or udp)"),
    ("dedup-and-nested", AND(TCP, AND(UDP, TCP)), "(tcp and udp)"),
    ("dedup-to-one", AND(TCP, TCP), "tcp"),
    ("dedup-structural", AND(cmp("ip.ttl", "<", 3), cmp("ip.ttl", "<", 3)), "ip.ttl < 3"),
    ("not-sorted-after-layer", AND(NOT(ACK), TTL1, TCP), "(ip.ttl <= 1 and tcp and not tcp.ack)"),
    # ---- a layer test another operand of the and implies is dropped
    ("implied-by-field", AND(TCP, SYN), "tcp.syn"),
    ("implied-by-deeper-field", AND(L("l4"), L("ip"), SYN), "tcp.syn"),
    ("implied-by-layer", AND(L("ip"), TCP), "tcp"),
    ("implied-in-nested-and", OR(AND(L("l4"), SYN), UDP), "(tcp.syn or udp)"),
    ("not-implies-no-layer", AND(NOT(ACK), TCP), "(tcp and not tcp.ack)"),
    ("or-implies-what-all-branches-do", AND(OR(SYN, UDP), L("l4")), "(tcp.syn or udp)"),
    ("or-of-other-layers", AND(OR(SYN, L("icmp")), L("l4")), "(l4 and (tcp.syn or icmp))"),
    ("field-of-other-layer", AND(TCP, TTL1), "(ip.ttl <= 1 and tcp)"),
    # ---- constant folding
    ("and-false", AND(TCP, F), "false"),
    ("and-true", AND(TCP, T), "tcp"),
    ("and-all-true", AND(T, T), "true"),
    ("or-true", OR(TCP, T), "true"),
    ("or-false", OR(TCP, F), "tcp"),
    ("or-all-false", OR(F, F), "false"),
    ("nested-false-absorbs", OR(UDP, AND(TCP, F)), "udp"),
    ("nested-true-absorbs", AND(UDP, OR(TCP, T)), "udp"),
    ("const-eq-true", ir.PCmp("==", const(1), const(1)), "true"),
    ("const-lt-false", ir.PCmp("<", const(2), const(1)), "false"),
    ("const-ge-true", ir.PCmp(">=", const(2), const(2)), "true"),
    ("not-true", NOT(T), "false"),
    ("not-false", NOT(F), "true"),
    ("not-of-folded", NOT(AND(TCP, F)), "true"),
    # ---- not not
    ("not-not", NOT(NOT(TCP)), "tcp"),
    ("not-not-not", NOT(NOT(NOT(TCP))), "not tcp"),
    ("not-not-inside-and", AND(UDP, NOT(NOT(TCP))), "(tcp and udp)"),
    ("not-kept", NOT(SYN), "not tcp.syn"),
    # ---- unsigned range folds
    ("u-lt-0-false", cmp("tcp.dport", "<", 0), "false"),
    ("u-pkt-ge-0-true", cmp("pkt.len", ">=", 0), "true"),
    ("u-ge-0-layer", cmp("ip.ttl", ">=", 0), "ip"),
    ("u-le-top-layer", cmp("ip.ttl", "<=", 255), "ip"),
    ("u-le-top-tcp", cmp("tcp.dport", "<=", 65535), "tcp"),
    ("u-gt-top-false", cmp("ip.ttl", ">", 255), "false"),
    ("u-eq-over-top-false", cmp("ip.ttl", "==", 256), "false"),
    ("u-ge-over-top-false", cmp("tcp.dport", ">=", 65536), "false"),
    ("u-ne-over-top-layer", cmp("tcp.dport", "!=", 70000), "tcp"),
    ("u-pkt-lt-0-false", cmp("pkt.len", "<", 0), "false"),
    ("u-const-left-swapped", rcmp(0, ">", "tcp.dport"), "false"),
    ("u-const-left-ge", rcmp(255, ">=", "ip.ttl"), "ip"),
    ("u-const-left-kept", rcmp(3, ">", "ip.ttl"), "ip.ttl < 3"),
    ("u-near-top-kept", cmp("ip.ttl", "<", 255), "ip.ttl < 255"),
    ("u-near-zero-kept", cmp("ip.ttl", ">", 0), "ip.ttl > 0"),
    ("u-fold-in-and", AND(TCP, cmp("pkt.len", ">=", 0)), "tcp"),
    ("u-fold-in-or", OR(cmp("tcp.dport", "<", 0), UDP), "udp"),
    ("u-le-top-merges-with-layer", AND(IP, cmp("ip.ttl", "<=", 255)), "ip"),
    # ---- in
    ("in-one-becomes-eq", IN("tcp.dport", 80), "tcp.dport == 80"),
    ("in-dup-becomes-eq", IN("tcp.dport", 80, 80), "tcp.dport == 80"),
    ("in-one-over-top-false", IN("ip.ttl", 300), "false"),
    ("in-one-range-kept", IN("tcp.dport", (1024, 65535)), "tcp.dport in {1024..65535}"),
    ("in-dedup-items", IN("tcp.dport", (1, 10), 5, (1, 10)), "tcp.dport in {5, 1..10}"),
    ("in-items-sorted", IN("tcp.dport", 443, 22), "tcp.dport in {22, 443}"),
    ("in-addr-one", ir.PIn(fld("ipv4.dst"), (ir.SetItem("eq", bytes([10, 0, 0, 1])),)), "ipv4.dst == 10.0.0.1"),
    ("in-prefix-kept", ir.PIn(fld("ipv4.dst"), (ir.SetItem("prefix", bytes([10, 0, 0, 0]), 8),)),
     "ipv4.dst in {10.0.0.0/8}"),
    # ---- equality is symmetric
    ("eq-fields-ordered", ir.PCmp("==", fld("tcp.sport"), fld("tcp.dport")), "tcp.dport == tcp.sport"),
    ("ne-fields-ordered", ir.PCmp("!=", fld("tcp.sport"), fld("tcp.dport")), "tcp.dport != tcp.sport"),
    ("eq-const-left", ir.PCmp("==", const(53), fld("udp.dport")), "udp.dport == 53"),
    ("eq-param-field", ir.PCmp("==", ir.VParam("a", "x"), fld("tcp.dport")), "tcp.dport == param a.x"),
]


@pytest.mark.parametrize("pred, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_normal_form(pred, expected):
    assert pstr(normalize(pred)) == expected


@pytest.mark.parametrize("pred", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_idempotent(pred):
    once = normalize(pred)
    assert normalize(once) == once


def test_case_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# Pairs written differently that must normalise to the same structure (and key).
SAME = [
    ("and-order", AND(TCP, SYN, NOT(ACK)), AND(NOT(ACK), AND(TCP, SYN))),
    ("or-order", OR(TCP, UDP, L("icmp")), OR(L("icmp"), OR(UDP, TCP))),
    ("eq-swapped", ir.PCmp("==", fld("tcp.sport"), fld("tcp.dport")),
     ir.PCmp("==", fld("tcp.dport"), fld("tcp.sport"))),
    ("const-swapped", rcmp(3, ">", "ip.ttl"), cmp("ip.ttl", "<", 3)),
    ("in-one-vs-eq", IN("tcp.dport", 80), cmp("tcp.dport", "==", 80)),
    ("in-item-order", IN("tcp.dport", 80, 22, (1, 5)), IN("tcp.dport", (1, 5), 22, 80, 22)),
    ("double-negation", AND(UDP, NOT(NOT(TCP))), AND(TCP, UDP)),
]


@pytest.mark.parametrize("a, b", [s[1:] for s in SAME], ids=[s[0] for s in SAME])
def test_equal_conditions_look_equal(a, b):
    assert normalize(a) == normalize(b)
    assert ir.pkey(normalize(a)) == ir.pkey(normalize(b))


def test_inequality_with_non_constant_operands_is_oriented():
    # two non-constant operands are ordered by key, the operator mirrored
    a = ir.PCmp("<", ir.VParam("a", "x"), fld("tcp.dport"))
    b = ir.PCmp(">", fld("tcp.dport"), ir.VParam("a", "x"))
    assert normalize(a) == normalize(b)
    assert pstr(normalize(a)) == "tcp.dport > param a.x"
    s = ir.PCmp(">", ir.VSize("a", "t"), ir.VParam("a", "max"))
    assert pstr(normalize(s)) == "param a.max < size(a.t)"


def test_pure_function_does_not_mutate_input():
    p = AND(TCP, AND(UDP, TCP), NOT(NOT(SYN)))
    before = ir.pkey(p)
    normalize(p)
    assert ir.pkey(p) == before


def test_prefs_are_left_alone():
    assert normalize(ir.PRef(7)) == ir.PRef(7)


# ---- semantics: the normal form means the same on every packet --------------------------------
# A tiny evaluator of IR predicates over a dict "packet" with pcap-filter
# absence: a comparison on a field of an absent layer is false.

_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_INT_FIELDS = ["tcp.dport", "ip.ttl", "pkt.len", "udp.sport"]


def _val(v, pk):
    return v.value if isinstance(v, ir.VConst) else pk.get(v.field.name)


def _eval(p, pk) -> bool:
    if isinstance(p, ir.PTrue):
        return True
    if isinstance(p, ir.PFalse):
        return False
    if isinstance(p, ir.PLayer):
        return p.layer in pk["layers"]
    if isinstance(p, ir.PNot):
        return not _eval(p.operand, pk)
    if isinstance(p, ir.PAnd):
        return all(_eval(o, pk) for o in p.operands)
    if isinstance(p, ir.POr):
        return any(_eval(o, pk) for o in p.operands)
    if isinstance(p, ir.PCmp):
        a, b = _val(p.left, pk), _val(p.right, pk)
        return a is not None and b is not None and _OPS[p.op](a, b)
    if isinstance(p, ir.PIn):
        a = _val(p.value, pk)
        return a is not None and any(a == i.lo if i.kind == "eq" else i.lo <= a <= i.hi for i in p.items)
    raise AssertionError(p)


def _random_pred(r: random.Random, depth: int = 0):
    c = r.random()
    if depth > 3 or c < 0.4:
        k = r.randrange(5)
        if k == 0:
            return L(r.choice(["tcp", "udp", "ip"]))
        if k == 1:
            return r.choice([T, F])
        if k == 2:
            return flag("tcp.syn", r.random() < 0.5)
        name = r.choice(_INT_FIELDS)
        top = (1 << FIELDS[name].bits) - 1
        v = r.choice([0, 1, 53, top - 1, top, top + 1])
        if k == 3:
            return IN(name, *[r.choice([0, 53, top, (1, 60)]) for _ in range(r.randint(1, 3))])
        if r.random() < 0.25:
            return rcmp(v, r.choice(list(_OPS)), name)
        return cmp(name, r.choice(list(_OPS)), v)
    if c < 0.55:
        return NOT(_random_pred(r, depth + 1))
    ops = tuple(_random_pred(r, depth + 1) for _ in range(r.randint(1, 4)))
    return (ir.PAnd if c < 0.8 else ir.POr)(ops)


def _random_packet(r: random.Random) -> dict:
    layers = r.choice([{"pkt"}, {"pkt", "ip"}, {"pkt", "ip", "tcp"}, {"pkt", "ip", "udp"}])
    pk = {"layers": layers, "pkt.len": r.choice([0, 1, 60, 1500, 2**32 - 1])}
    if "ip" in layers:
        pk["ip.ttl"] = r.choice([0, 1, 64, 255])
    if "tcp" in layers:
        pk["tcp.dport"] = r.choice([0, 53, 80, 65535])
        pk["tcp.syn"] = r.random() < 0.5
    if "udp" in layers:
        pk["udp.sport"] = r.choice([0, 53, 65535])
    return pk


def test_random_trees_keep_their_meaning_and_are_idempotent():
    r = random.Random(20240601)
    packets = [_random_packet(r) for _ in range(24)]
    for _ in range(1500):
        p = _random_pred(r)
        n = normalize(p)
        assert normalize(n) == n, f"not idempotent: {pstr(p)} -> {pstr(n)} -> {pstr(normalize(n))}"
        for pk in packets:
            assert _eval(p, pk) == _eval(n, pk), f"{pstr(p)} -> {pstr(n)} differs on {pk}"
