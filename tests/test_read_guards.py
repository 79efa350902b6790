"""A rule's packet predicates guard its statistic reads (compiler/plan.py ``read_guards``):
where every rule reading a value is and-ed with packet predicates (beyond the app's
select), T3 reads the value only where they hold. Which reads get which guard, the C it
becomes, and, on both engines, that rules fire exactly as before on frames that do and do
not satisfy the guard."""

from __future__ import annotations


from engine_helpers import run, tcp, udp
from spec_helpers import compile_text, find_pred

TRIGGER = """app t {
  t1 { select l4 }
  t2 { syns = count() by ip.dst where tcp.syn and not tcp.ack window 1s
       any = count() by ip.src window 1s }
  t3 { when tcp.syn and not tcp.ack and syns > param a = 2 { alert "syns" limit 1000/s }
       when any > param b = 3 { alert "any" limit 1000/s } }
}
"""


def guards(art, app="t"):
    (t3,) = [t for t in art.plan.t3 if t.app == app]
    return {(r.value.stat, r.value.member): r.guard for r in t3.reads}


def test_which_reads_are_guarded(tmp_path):
    art = compile_text(tmp_path, TRIGGER)
    prog = art.ir
    syn, notack = find_pred(prog, "tcp.syn").id, find_pred(prog, "not p%d" % find_pred(prog, "tcp.ack").id).id
    assert guards(art) == {("syns", "count"): (syn, notack), ("any", "count"): ()}
    assert f"/* read only where P[{syn}], P[{notack}] hold" in art.c


def test_reads_of_one_entry_share_its_guard(tmp_path):
    """Values of one map entry are looked up once: guarded only by what guards them all."""
    art = compile_text(tmp_path, TRIGGER.replace("by ip.src window", "by ip.dst window"))
    assert guards(art) == {("syns", "count"): (), ("any", "count"): ()}


def test_a_value_read_by_a_rule_without_the_predicate_is_not_guarded(tmp_path):
    text = TRIGGER.replace('when any > param b = 3', 'when syns > param b = 3')
    art = compile_text(tmp_path, text)
    assert guards(art)[("syns", "count")] == ()                 # the second rule reads it on every packet
    assert "read only where" not in art.c


def test_the_apps_select_is_no_guard(tmp_path):
    text = """app s {
  t1 { select tcp.syn and not tcp.ack }
  t2 { syns = count() by ip.dst window 1s }
  t3 { when tcp.syn and syns > param a = 2 { alert "x" } }
}
"""
    art = compile_text(tmp_path, text)
    assert guards(art, "s") == {("syns", "count"): ()}          # T3 runs inside the select already


def test_rules_fire_as_written(engine):
    """SYNs, ACKs and UDP to one destination: the guarded rule fires on the SYNs past 2
    only (3 of 5 SYNs), the unguarded one on every packet past 3 (6 of 9)."""
    eng = engine(TRIGGER)
    frames = [tcp(flags="S"), tcp(flags="A"), tcp(flags="S"), udp(), tcp(flags="S"), tcp(flags="A"),
              tcp(flags="S"), tcp(flags="SA"), tcp(flags="S")]
    run(eng, frames)
    c = eng.snapshot()["counters"]
    assert (c["rule.t.r0.fired"], c["rule.t.r1.fired"]) == (3, 6)
