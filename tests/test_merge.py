"""compiler/passes/merge_stats.py: identical statistics share one slot,
statistics on the same key share one fused map, sketches and track tables get
maps of their own, on-demand statistics are never shared with always-on ones.

Each case compiles a small inline spec up to the merge pass and checks the
maps section of ``ir.dump`` exactly, then the facts that matter.
"""

from __future__ import annotations

import pytest

from compiler import ir
from compiler.plan import slot_gates
from spec_helpers import ir_of, map_of, positional, section, slot_of


def merged(tmp_path, text):
    return positional(ir_of(tmp_path, text, upto="merge"))


def maps_text(prog) -> str:
    return section(ir.dump(prog), "maps")


def uses(slot: ir.Slot) -> list[str]:
    return [f"{u.app}.{u.stat}.{u.member}" for u in slot.uses]


# ---- sharing ------------------------------------------------------------------------------

def test_identical_stat_in_two_always_on_apps_is_one_slot_with_two_uses(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select tcp } t2 { per_src = count() by ip.src } }
app b { t1 { select tcp } t2 { src_pkts = count() as n by ip.src } }
""")
    assert maps_text(prog) == """\
  m0: fused key (ip.src) size 16384 on full count
    s0: count() if p0 window -    # a.per_src.count, b.src_pkts.n
"""
    assert prog.stat_slots == {("a", "per_src", "count"): ("m0", "s0"), ("b", "src_pkts", "n"): ("m0", "s0")}
    assert [u.app for u in prog.maps[0].uses] == ["a", "b"]


def test_same_key_other_aggregates_guards_windows_is_one_fused_map(tmp_path):
    prog = merged(tmp_path, """
app a {
  t1 { select tcp }
  t2 {
    x = count(), sum(pkt.len) by ip.dst
    y = max(pkt.len) by ip.dst where tcp.syn
    z = count() by ip.dst window 1s
    h = hist(pkt.len), distinct(tcp.sport) by ip.dst window 10s
  }
}
app b { t1 { select udp } t2 { x = count() by ip.dst } }
""")
    assert maps_text(prog) == """\
  m0: fused key (ip.dst) size 16384 on full count
    s0: max(pkt.len) if p2 window -    # a.y.max_pkt_len
    s1: count() if p1 window -    # b.x.count
    s2: count() if p0 window -    # a.x.count
    s3: sum(pkt.len) if p0 window -    # a.x.sum_pkt_len
    s4: count() if p0 window 1s    # a.z.count
    s5: distinct(tcp.sport) registers=64 if p0 window 10s    # a.h.distinct
    s6: hist(pkt.len) if p0 window 10s    # a.h.hist_pkt_len
"""
    (m,) = prog.maps
    assert m.kind == "fused" and len(m.slots) == 7
    assert {u.app for u in m.uses} == {"a", "b"}


def test_slots_sharing_a_window_are_kept_together(tmp_path):
    prog = merged(tmp_path, """
app a { t2 {
  p = count() by ip.src window 10s
  q = count() by ip.src
  r = sum(pkt.len) by ip.src window 1s
  s = max(pkt.len) by ip.src window 10s
} }
""")
    slots = prog.maps[0].slots
    # grouped by window (None first), by name within a group
    assert [s.window_ns for s in slots] == [None, 10**9, 10 * 10**9, 10 * 10**9]
    assert sorted((s.func, s.window_ns or 0) for s in slots) == [
        ("count", 0), ("count", 10 * 10**9), ("max", 10 * 10**9), ("sum", 10**9)]


def test_keys_in_another_order_are_the_same_map_and_slot(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select ip } t2 { f = count() by (ip.src, ip.dst, ip.proto) } }
app b { t1 { select ip } t2 { g = count() by (ip.proto, ip.dst, ip.src) } }
""")
    assert maps_text(prog) == """\
  m0: fused key (ip.dst, ip.proto, ip.src) size 16384 on full count
    s0: count() if p0 window -    # a.f.count, b.g.count
"""
    # the order each spec wrote is kept for reads with the stat's own key
    assert prog.stat_keys == {("a", "f"): ("ip.src", "ip.dst", "ip.proto"),
                              ("b", "g"): ("ip.proto", "ip.dst", "ip.src")}


def test_different_on_full_is_a_different_map(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select ip } t2 {
  x = count() by ip.src
  y = count() by ip.src on full lru
  z = sum(pkt.len) by ip.src on full count
} }
""")
    assert maps_text(prog) == """\
  m0: fused key (ip.src) size 16384 on full count
    s0: sum(pkt.len) if p0 window -    # a.z.sum_pkt_len
    s2: count() if p0 window -    # a.x.count
  m1: fused key (ip.src) size 16384 on full lru
    s2: count() if p0 window -    # a.y.count
"""


def test_map_size_is_the_largest_asked(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select ip } t2 { x = count() by ip.src size 1000 } }
app b { t1 { select ip } t2 { y = sum(pkt.len) by ip.src size 70000 } }
app c { t1 { select ip } t2 { z = count() by ip.src size 10 } }
""")
    (m,) = prog.maps
    assert m.size == 70000
    assert sorted(uses(s) for s in m.slots) == [["a.x.count", "c.z.count"], ["b.y.sum_pkt_len"]]


@pytest.mark.parametrize("b_stat", [
    "x = count() by ip.src where tcp.syn",      # other guard (where)
    "x = count() by ip.src window 1s",          # other window
    "x = sum(pkt.len) by ip.src",               # other aggregate
    "x = max(pkt.len) by ip.src",
    "x = distinct(tcp.sport, registers=128) by ip.src",
], ids=["where", "window", "sum", "max", "distinct-registers"])
def test_what_makes_a_slot_different(tmp_path, b_stat):
    prog = merged(tmp_path, f"""
app a {{ t1 {{ select tcp }} t2 {{ x = count() by ip.src  d = distinct(tcp.sport) by ip.src }} }}
app b {{ t1 {{ select tcp }} t2 {{ {b_stat} }} }}
""")
    (m,) = prog.maps
    assert len(m.slots) == 3
    assert all(len(s.uses) == 1 for s in m.slots)


def test_another_select_is_another_guard_and_slot(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select tcp } t2 { x = count() by ip.src } }
app b { t1 { select udp } t2 { x = count() by ip.src } }
app c { t2 { x = count() by ip.src where udp } }
""")
    assert maps_text(prog) == """\
  m0: fused key (ip.src) size 16384 on full count
    s0: count() if p0 window -    # a.x.count
    s1: count() if p1 window -    # b.x.count, c.x.count
"""


# ---- on-demand apps -------------------------------------------------------------------------------

ON_DEMAND = """
app always_a { t1 { select tcp } t2 { x = count() by ip.dst window 1s } }
app od_b { mode on_demand t1 { select tcp } t2 { x = count() by ip.dst window 1s } }
app od_c { mode on_demand t1 { select tcp } t2 { x = count() by ip.dst window 1s } }
app always_d { t1 { select tcp } t2 { x = count() by ip.dst window 1s } }
"""


def test_on_demand_stat_reads_the_slot_always_on_apps_keep(tmp_path):
    # always_a and always_d keep the slot anyway: od_b and od_c read it (counted all along)
    prog = merged(tmp_path, ON_DEMAND)
    assert maps_text(prog) == """\
  m0: fused key (ip.dst) size 16384 on full count
    s0: count() if p0 window 1s    # always_a.x.count, od_b.x.count, od_c.x.count, always_d.x.count
"""
    for app in ("always_a", "od_b", "od_c", "always_d"):
        assert slot_gates(prog, slot_of(prog, app, "x", "count")) == ()


def test_on_demand_stat_gets_its_own_slot_in_the_shared_fused_map(tmp_path):
    # no always-on app keeps it: each on-demand app counts only while it is on
    prog = merged(tmp_path, ON_DEMAND.replace("app always_a { t1 { select tcp } t2 { x = count() by ip.dst window 1s } }",
                                              "app always_a { t1 { select tcp } t2 { x = count() by ip.dst window 10s } }")
                  .replace("app always_d { t1 { select tcp } t2 { x = count() by ip.dst window 1s } }", ""))
    assert maps_text(prog) == """\
  m0: fused key (ip.dst) size 16384 on full count
    s0: count() if p0 window 1s    # od_c.x.count
    s1: count() if p0 window 1s    # od_b.x.count
    s2: count() if p0 window 10s    # always_a.x.count
"""
    assert slot_gates(prog, slot_of(prog, "always_a", "x", "count")) == ()
    assert slot_gates(prog, slot_of(prog, "od_b", "x", "count")) == ("od_b",)
    assert slot_gates(prog, slot_of(prog, "od_c", "x", "count")) == ("od_c",)


SKETCH_AND_TRACK = """
app APP { MODE t1 { select tcp } t2 {
  u = distinct(ip.src) window 1s
  t = track (ip.src) open when tcp.syn close when tcp.fin expire 10s
} }
"""


def _apps(*apps) -> str:
    return "".join(SKETCH_AND_TRACK.replace("APP", a).replace("MODE", m) for a, m in apps)


def test_on_demand_sketch_and_track_read_the_always_on_ones(tmp_path):
    prog = merged(tmp_path, _apps(("a", ""), ("b", "mode on_demand")))
    assert [m.kind for m in prog.maps] == ["hll", "track"]
    assert prog.track_maps == {("a", "t"): "m1", ("b", "t"): "m1"}
    assert prog.stat_slots[("a", "u", "distinct")] == prog.stat_slots[("b", "u", "distinct")]


def test_on_demand_sketch_and_track_are_not_shared_between_on_demand_apps(tmp_path):
    prog = merged(tmp_path, _apps(("b", "mode on_demand"), ("c", "mode on_demand")))
    assert [m.kind for m in prog.maps] == ["hll", "track", "hll", "track"]
    assert prog.track_maps == {("b", "t"): "m1", ("c", "t"): "m3"}
    assert prog.stat_slots[("b", "u", "distinct")][0] == "m0"
    assert prog.stat_slots[("c", "u", "distinct")][0] == "m2"


def test_track_is_its_own_map_shared_when_identical(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select tcp } t2 {
  n = count() by (ip.src, ip.dst)
  t = track (ip.src, ip.dst) open when tcp.syn close when tcp.fin expire 10s size 1000
} }
app b { t1 { select tcp } t2 {
  t2 = track (ip.dst, ip.src) open when tcp.syn close when tcp.fin expire 10s size 5000
} }
app c { t1 { select tcp } t2 {
  t = track (ip.src, ip.dst) open when tcp.syn close when tcp.fin expire 20s
} }
""")
    assert maps_text(prog) == """\
  m0: fused key (ip.dst, ip.src) size 16384 on full count
    s0: count() if p0 window -    # a.n.count
  m1: track key (ip.dst, ip.src) size 5000 on full lru
    track a.t: open p1 close p2 expire 10s
  m2: track key (ip.dst, ip.src) size 65536 on full lru
    track c.t: open p1 close p2 expire 20s
"""
    assert prog.track_maps == {("a", "t"): "m1", ("b", "t2"): "m1", ("c", "t"): "m2"}
    assert [(u.app, u.stat) for u in prog.maps[1].uses] == [("a", "t"), ("b", "t2")]
    assert prog.maps[1].slots == ()


# ---- the index -----------------------------------------------------------------------------------

def test_stat_slots_index_is_correct(tmp_path):
    prog = merged(tmp_path, """
app a { t1 { select udp } t2 {
  q = count(), sum(pkt.len) as bytes, min(pkt.ts) as first by ip.src window 10s
  r = count() by dns.rcode
  u = distinct(ip.src, udp.sport)
} }
app b { t1 { select udp } t2 { q = count() as n by ip.src window 10s  k = hist(pkt.len) } }
""")
    ss = prog.stat_slots
    assert set(ss) == {("a", "q", "count"), ("b", "q", "n"), ("a", "q", "bytes"), ("a", "q", "first"),
                       ("a", "r", "count"), ("a", "u", "distinct"), ("b", "k", "hist_pkt_len")}
    assert ss[("a", "q", "count")] == ss[("b", "q", "n")]          # one slot, two uses
    assert {ss[k][0] for k in [("a", "q", "count"), ("a", "q", "bytes"), ("a", "q", "first")]} == {"m0"}
    assert [ss[k][0] for k in [("a", "r", "count"), ("a", "u", "distinct"), ("b", "k", "hist_pkt_len")]] == [
        "m1", "m2", "m3"]
    assert len({v for v in ss.values()}) == 6
    # every entry points at a slot whose uses include it, and every use is indexed
    for (app, stat, member), (mname, sname) in prog.stat_slots.items():
        m = next(m for m in prog.maps if m.name == mname)
        s = next(s for s in m.slots if s.name == sname)
        assert (app, stat, member) in {(u.app, u.stat, u.member) for u in s.uses}
        assert (app, stat, member) in {(u.app, u.stat, u.member) for u in m.uses}
    indexed = {(u.app, u.stat, u.member) for m in prog.maps for s in m.slots for u in s.uses}
    assert indexed == set(prog.stat_slots)
    assert map_of(prog, "b", "k").kind == "fused"


def test_merge_consumes_pending_stats_and_names_are_dense(tmp_path):
    from benchmarks.specgen import generate

    prog = merged(tmp_path, generate(32))
    assert prog.pending_stats == []
    assert [m.name for m in prog.maps] == [f"m{i}" for i in range(len(prog.maps))]
    slots = [s.name for m in prog.maps for s in m.slots]
    assert slots == [f"s{i}" for i in range(len(slots))]
    # every aggregate of every app has exactly one slot
    n_aggs = sum(len(st.aggregates) for a in prog.apps for st in _model_stats(tmp_path) if st.app == a.name
                 and st.kind == "aggregate")
    assert len(prog.stat_slots) == n_aggs


def _model_stats(tmp_path):
    from compiler.frontend import load

    prog, _ = load([tmp_path / "a.mon"])
    return [st for a in prog.apps for st in a.stats]
