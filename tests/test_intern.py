"""compiler/passes/intern.py: each distinct normalised predicate gets one id,
whatever app or tier wrote it; operands come first (evaluation order); users
and phases are recorded.
"""

from __future__ import annotations

import pytest

from compiler import ir
from compiler.ir import pstr
from compiler.passes.intern import Interner
from dsl.ast import Span
from dsl.fields import FIELDS, Kind
from spec_helpers import find_pred, ir_of, pred_texts, section
from test_normalize import ACK, AND, NOT, OR, SYN, TCP, UDP, cmp, fld


IPV4 = ir.PLayer("ipv4")


def nodes(it: Interner) -> list[str]:
    return [f"p{n.id} = {pstr(n.pred)}    # phase {n.phase}; {', '.join(n.users)}" for n in it.finish()]


# ---- the Interner on hand-built trees --------------------------------------------------------

def test_equal_predicates_from_two_apps_get_one_id_with_both_users():
    it = Interner()
    a = it.intern(AND(IPV4, SYN), "a")
    b = it.intern(AND(SYN, IPV4), "b")        # same condition, other order
    assert a == b
    assert nodes(it) == [
        "p0 = tcp.syn    # phase 1; a, b",
        "p1 = ipv4    # phase 1; a, b",
        "p2 = (p0 and p1)    # phase 1; a, b",
    ]


def test_operands_are_interned_first_and_shared():
    it = Interner()
    it.intern(AND(TCP, SYN, NOT(ACK)), "a")     # syn flood select (tcp: implied by tcp.syn)
    it.intern(AND(ACK, TCP, NOT(SYN)), "b")     # its close guard
    assert nodes(it) == [
        "p0 = tcp.syn    # phase 1; a, b",
        "p1 = tcp.ack    # phase 1; a, b",
        "p2 = not p1    # phase 1; a",
        "p3 = (p0 and p2)    # phase 1; a",
        "p4 = not p0    # phase 1; b",
        "p5 = (p1 and p4)    # phase 1; b",
    ]
    for n in it.finish():                       # evaluation order: operands have smaller ids
        for ref in _refs(n.pred):
            assert ref < n.id


def _refs(p) -> list[int]:
    if isinstance(p, (ir.PAnd, ir.POr)):
        return [o.id for o in p.operands]
    if isinstance(p, ir.PNot):
        return [p.operand.id]
    return []


def test_interning_normalises_first():
    it = Interner()
    x = it.intern(AND(UDP, NOT(NOT(TCP)), cmp("pkt.len", ">=", 0)), "a")
    y = it.intern(AND(TCP, UDP), "b")
    assert x == y
    assert nodes(it) == [
        "p0 = tcp    # phase 1; a, b",
        "p1 = udp    # phase 1; a, b",
        "p2 = (p0 and p1)    # phase 1; a, b",
    ]


def test_the_same_app_twice_is_one_user():
    it = Interner()
    it.intern(TCP, "a")
    it.intern(TCP, "a")
    (n,) = it.finish()
    assert n.users == ("a",)


def test_users_propagate_to_operands_but_not_to_parents():
    it = Interner()
    it.intern(OR(TCP, UDP), "a")
    it.intern(TCP, "b")
    assert nodes(it) == [
        "p0 = tcp    # phase 1; a, b",
        "p1 = udp    # phase 1; a",
        "p2 = (p0 or p1)    # phase 1; a",
    ]


def test_users_are_sorted():
    it = Interner()
    for app in ("zeta", "alpha", "mid"):
        it.intern(TCP, app)
    assert it.finish()[0].users == ("alpha", "mid", "zeta")


def test_spans_are_recorded_once_each_on_the_top_node():
    s1 = Span("a.mon", 1, 1, 1, 5)
    s2 = Span("b.mon", 3, 1, 3, 5)
    it = Interner()
    it.intern(AND(TCP, SYN), "a", s1)
    it.intern(AND(TCP, SYN), "a", s1)
    it.intern(AND(SYN, TCP), "b", s2)
    top = it.finish()[-1]
    assert top.spans == (s1, s2)
    assert all(n.spans == () for n in it.finish()[:-1])


def _stat(app="a", stat="s", member="count", key=()):
    return ir.VStat(app, stat, member, tuple(FIELDS[k] for k in key))


PHASES = [
    ("field-cmp", cmp("ip.ttl", "<", 3), 1),
    ("param", ir.PCmp(">", fld("tcp.dport"), ir.VParam("a", "x")), 1),
    ("stat", ir.PCmp(">", _stat(), ir.VParam("a", "x")), 3),
    ("stat-keyed", ir.PCmp(">", _stat(key=("ip.src",)), ir.VConst(Kind.INT, 5)), 3),
    ("size", ir.PCmp(">", ir.VSize("a", "t"), ir.VConst(Kind.INT, 5)), 3),
    ("stat-in-arith", ir.PCmp(">", fld("pkt.len"),
                              ir.VArith("*", ir.VConst(Kind.INT, 2), _stat())), 3),
    ("and-of-phases", AND(TCP, ir.PCmp(">", _stat(), ir.VConst(Kind.INT, 5))), 3),
    ("not-of-stat", NOT(ir.PCmp(">", ir.VSize("a", "t"), ir.VConst(Kind.INT, 5))), 3),
    ("layer", TCP, 1),
]


@pytest.mark.parametrize("pred, phase", [p[1:] for p in PHASES], ids=[p[0] for p in PHASES])
def test_phase(pred, phase):
    it = Interner()
    pid = it.intern(pred, "a")
    assert it.finish()[pid].phase == phase


def test_phase_1_operands_of_a_phase_3_node_stay_phase_1():
    it = Interner()
    it.intern(AND(TCP, ir.PCmp(">", _stat(), ir.VConst(Kind.INT, 5))), "a")
    assert nodes(it) == [
        "p0 = a.s.count > 5    # phase 3; a",
        "p1 = tcp    # phase 1; a",
        "p2 = (p0 and p1)    # phase 3; a",
    ]


# ---- intern.run over a whole program (through the front end) ----------------------------------

TWO_APPS = """
app dns_a {
  t1 { select udp.port == 53 }
  t2 { q = count() by ip.src where not dns.qr }
}
app dns_b {
  t1 { select udp.port == 53 and dns.qr }
  t2 { r = count() by dns.rcode }
  t3 { when r > 10 and pkt.len > param big = 512 { alert "many" } }
}
"""


def test_run_program(tmp_path):
    prog = ir_of(tmp_path, TWO_APPS, upto="intern")
    assert pred_texts(prog) == [
        "p0 = udp.dport == 53",
        "p1 = udp.sport == 53",
        "p2 = (p0 or p1)",
        "p3 = dns.qr",
        "p4 = (p3 and p2)",
        "p5 = pkt.len > param dns_b.big",
        "p6 = dns_b.r[dns.rcode].count > 10",
        "p7 = (p3 and p5 and p6 and p2)",
        "p8 = not p3",
        "p9 = (p8 and p2)",
    ]
    # the either-port expansion and its 'or' are one node for both apps
    for text in ("udp.dport == 53", "udp.sport == 53", "(p0 or p1)", "dns.qr"):
        assert find_pred(prog, text).users == ("dns_a", "dns_b")
    # selects, rules and stat guards now hold ids
    assert prog.app("dns_a").select == 2
    assert prog.app("dns_b").select == 4
    assert prog.app("dns_b").rules[0].cond == 7
    guards = {(ps.app, ps.stat.name): ps.guard for ps in prog.pending_stats}
    assert guards == {("dns_a", "q"): 9, ("dns_b", "r"): 4}    # dns_b.r's guard is its select
    phases = {n.id: n.phase for n in prog.preds}
    assert phases == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 3, 7: 3, 8: 1, 9: 1}


def test_run_dump_section(tmp_path):
    prog = ir_of(tmp_path, TWO_APPS, upto="intern")
    assert section(ir.dump(prog), "preds") == """\
  p0 = udp.dport == 53    # phase 1; dns_a, dns_b
  p1 = udp.sport == 53    # phase 1; dns_a, dns_b
  p2 = (p0 or p1)    # phase 1; dns_a, dns_b
  p3 = dns.qr    # phase 1; dns_a, dns_b
  p4 = (p3 and p2)    # phase 1; dns_b
  p5 = pkt.len > param dns_b.big    # phase 1; dns_b
  p6 = dns_b.r[dns.rcode].count > 10    # phase 3; dns_b
  p7 = (p3 and p5 and p6 and p2)    # phase 3; dns_b
  p8 = not p3    # phase 1; dns_a
  p9 = (p8 and p2)    # phase 1; dns_a
"""


def test_the_same_condition_in_select_where_and_when_is_one_node(tmp_path):
    prog = ir_of(tmp_path, """
app a { t1 { select tcp and ip.ttl < 5 } }
app b { t1 { select tcp } t2 { n = count() where ip.ttl < 5 } }
app c { t3 { when ip.ttl < 5 and tcp { alert "c" } } }
""", upto="intern")
    assert pred_texts(prog) == ["p0 = ip.ttl < 5", "p1 = tcp", "p2 = (p0 and p1)"]
    n = prog.preds[2]
    assert n.users == ("a", "b", "c")
    assert prog.app("a").select == n.id
    assert prog.app("c").rules[0].cond == n.id
    assert [ps.guard for ps in prog.pending_stats] == [n.id]
    assert len({(n.file, n.line) for n in n.spans}) == 3       # select, stat, rule


def test_every_reference_is_to_an_existing_earlier_node(tmp_path):
    from benchmarks.specgen import generate

    prog = ir_of(tmp_path, generate(32), upto="intern")
    keys = [ir.pkey(n.pred) for n in prog.preds]
    assert len(keys) == len(set(keys)), "a predicate was interned twice"
    for n in prog.preds:
        assert n.id == prog.preds.index(n)
        assert all(r < n.id for r in _refs(n.pred))
        assert n.users, n


def test_bitwise_and_predicates_are_interned_by_value(tmp_path):
    """The same '&' test in two apps is one predicate; another mask is another one."""
    prog = ir_of(tmp_path, """
app a { t1 { select tcp.flags & 0x12 == 0x02 } }
app b { t2 { n = count() where tcp.flags & 18 == 2 } }
app c { t1 { select tcp.flags & 0x10 == 0x02 } }
""", upto="intern")
    assert pred_texts(prog) == ["p0 = (tcp.flags & 18) == 2", "p1 = (tcp.flags & 16) == 2"]
    assert prog.preds[0].users == ("a", "b") and prog.preds[1].users == ("c",)
