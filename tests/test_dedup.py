"""Deduplication end to end: spec files in, C program and manifest out.

- two apps with the same statistic: one map, one slot;
- the same key with other aggregates, guards, windows: one fused map, one
  lookup per packet;
- a predicate several apps share is evaluated once: exactly one ``P[id] =``
  assignment in the generated C for every interned predicate;
- the merge report's before/after counts.
"""

from __future__ import annotations

import re

import pytest

from compiler.parse_outcomes import decoders_for

from benchmarks.specgen import generate
from compiler import report as report_mod
from compiler.passes.layers import needed_layers
from compiler.plan import slot_gates
from spec_helpers import ROOT, aliased, find_pred, ir_of, pred_assignments, slot_of
from spec_helpers import compile_text as _compile_text

SPECS = sorted((ROOT / "specs").glob("*.mon"))

DNS_APPS = """
app dns_count { t1 { select udp.port == 53 } t2 { per_src = count() by ip.src } }
app dns_bytes {
  t1 { select udp.port == 53 }
  t2 {
    per_src = count(), sum(pkt.len) as bytes by ip.src
    resp    = count() by ip.src where dns.qr window 10s
  }
}
app dns_big { t1 { select udp.port == 53 and dns.qr } t3 { when pkt.len > 512 { alert "big response" } } }
"""


def compile_text(tmp_path, specs):
    return aliased(_compile_text(tmp_path, specs))


@pytest.fixture
def dns(tmp_path):
    return compile_text(tmp_path, DNS_APPS)


def _maps_in_c(c: str) -> list[str]:
    return re.findall(r'^XM_MAP\("(?:lru_)?(?:percpu_)?hash", struct xm_k_\w+, struct xm_v_\w+, (m\d+), \d+, 0, "[^"]+"\);$',
                      c, re.M) + \
        re.findall(r'^XM_MAP\("(?:percpu_)?array", int, struct xm_v_m\d+, (m\d+), \d+, 0, "[^"]+"\);', c, re.M)


# ---- statistics -----------------------------------------------------------------------------

def test_counts(dns):
    prog = dns.ir
    assert len(prog.maps) == 1
    assert sum(len(m.slots) for m in prog.maps) == 3
    assert len(prog.preds) == 7
    assert sum(1 for n in prog.preds if len(n.users) > 1) == 5
    assert len(prog.stat_slots) == 4                   # four aggregates written, three kept


def test_two_apps_with_the_same_statistic_share_one_map_and_slot(dns):
    (m,) = dns.manifest["maps"]
    assert m["name"] == "m0" and m["kind"] == "fused" and m["bpf_type"] == "percpu_hash"   # no rule reads it
    assert m["key_fields"] == ["ip.src"]
    assert m["shared_by"] == ["dns_bytes", "dns_count"]
    s0 = m["slots"][0]
    assert s0["func"] == "count"
    assert [(u["app"], u["stat"], u["member"]) for u in s0["uses"]] == [
        ("dns_count", "per_src", "count"), ("dns_bytes", "per_src", "count")]
    # the C declares that one map once, and each app's stat points at the same slot
    assert _maps_in_c(dns.c) == ["m0"]
    members = {(a["name"], s["name"]): [(x["name"], x["map"], x["slot"]) for x in s["members"]]
               for a in dns.manifest["apps"] for s in a["stats"]}
    assert members[("dns_count", "per_src")] == [("count", "m0", "s0")]
    assert members[("dns_bytes", "per_src")] == [("count", "m0", "s0"), ("bytes", "m0", "s1")]


def test_same_key_other_aggregates_is_one_fused_map_and_one_lookup(dns):
    c = dns.c
    # the value struct holds every slot, the windowed one after its own epoch and
    # before its last window's value
    value = re.search(r"struct xm_v_m0 \{\n(.*?)\n\}", c, re.S).group(1).split("\n")
    assert [line.strip() for line in value] == [
        "__u64 s0;", "__u64 s1;", "__u64 s2_e;", "__u64 s2;", "__u64 s2_last;"]
    # one insert-or-lookup of the key per packet, then each slot under its own guard
    assert c.count("xm_upsert_m0(&k, ") == 1
    t2 = c[c.index("/* ---- T2"):c.index("/* ---- T3")]
    assert t2.count(".lookup(") == 0
    assert "if (P[2]) {   /* s0: count() */" in t2
    assert "if (P[2]) {   /* s1: sum(pkt.len) */" in t2
    assert "if (P[4]) {   /* s2: count() window 10000000000 ns */" in t2


def test_different_keys_are_different_maps(tmp_path):
    art = compile_text(tmp_path, """
app a { t1 { select ip } t2 { x = count() by ip.src  y = count() by ip.dst  z = count() by (ip.src, ip.dst) } }
app b { t1 { select ip } t2 { x = count() by (ip.dst, ip.src) } }
""")
    assert [(m.name, [f.name for f in m.key], len(m.slots)) for m in art.ir.maps] == [
        ("m0", ["ip.src"], 1), ("m1", ["ip.dst"], 1), ("m2", ["ip.dst", "ip.src"], 1)]
    assert _maps_in_c(art.c) == ["m0", "m1", "m2"]


def test_on_demand_app_reads_the_slot_an_always_on_app_keeps(tmp_path):
    # a's statistic is computed anyway: b (on demand) reads it and costs nothing more
    art = compile_text(tmp_path, """
app a { t1 { select tcp } t2 { n = count() by ip.dst window 1s } }
app b { mode on_demand t1 { select tcp } t2 { n = count() by ip.dst window 1s } }
""")
    assert len(art.ir.maps) == 1 and len(art.ir.maps[0].slots) == 1
    (m,) = art.manifest["maps"]
    assert [s["gated_by"] for s in m["slots"]] == [[]]
    assert [u.app for u in art.ir.maps[0].slots[0].uses] == ["a", "b"]
    assert "if (P[0]) {   /* s0: count() window 1000000000 ns */" in art.c
    assert art.c.count("xm_upsert_m0(&k, ") == 1


def test_the_reference_trigger_keeps_the_detectors_count(tmp_path):
    # specs/: flow_watch's SYNs per destination are syn_flood's syns, kept once and always
    texts = {n: (ROOT / "specs" / n).read_text() for n in ("flow_watch.mon", "syn_flood.mon")}
    prog = ir_of(tmp_path, texts)
    slot = slot_of(prog, "syn_flood", "syns", "count")
    assert slot is slot_of(prog, "flow_watch", "syns", "count")
    assert [u.app for u in slot.uses] == ["flow_watch", "syn_flood"]
    assert slot_gates(prog, slot) == ()


def test_on_demand_apps_share_the_map_not_the_slot(tmp_path):
    # without an always-on user, each on-demand app counts only while it is on: a slot each
    art = compile_text(tmp_path, """
app b { mode on_demand t1 { select tcp } t2 { n = count() by ip.dst window 1s } }
app c { mode on_demand t1 { select tcp } t2 { n = count() by ip.dst window 1s } }
""")
    assert len(art.ir.maps) == 1 and len(art.ir.maps[0].slots) == 2
    (m,) = art.manifest["maps"]
    assert sorted(s["gated_by"] for s in m["slots"]) == [["b"], ["c"]]
    assert "if ((P[0] && (s->en & ((1ULL << 0))))) {   /* s" in art.c
    assert "if ((P[0] && (s->en & ((1ULL << 1))))) {   /* s" in art.c
    # each slot keeps its own window: c's never resets b's
    assert "if (v->s0_e != ep_1000000000)" in art.c and "if (v->s1_e != ep_1000000000)" in art.c
    assert art.c.count("xm_upsert_m0(&k, ") == 1


def test_an_and_drops_the_layer_test_another_operand_implies(tmp_path):
    # select l4 + where tcp.syn guards the same packets as select tcp.syn: one slot
    art = compile_text(tmp_path, """
app a { t1 { select l4 } t2 { n = count() by ip.dst where tcp.syn and not tcp.ack } }
app b { t1 { select tcp.syn and not tcp.ack } t2 { n = count() by ip.dst } }
app c { t1 { select ipv4 and ip } t2 { n = count() by ip.dst } }
""")
    slots = {u.app: s.name for m in art.ir.maps for s in m.slots for u in s.uses}
    assert slots["a"] == slots["b"] != slots["c"]
    # not tcp.ack holds without TCP too: it implies no layer
    assert find_pred(art.ir, "ipv4").users == ("c",)


# ---- predicates -------------------------------------------------------------------------------

def test_shared_predicates_are_evaluated_once(dns):
    prog = dns.ir
    sel = find_pred(prog, "(p0 or p1)")                 # udp.port == 53
    assert sel.users == ("dns_big", "dns_bytes", "dns_count")
    assert [a.select for a in prog.apps] == [sel.id, sel.id, find_pred(prog, "(p3 and p2)").id]
    counts = pred_assignments(dns.c)
    assert counts == {n.id: 1 for n in prog.preds}
    assert dns.c.count("P[2] = (P[0] || P[1]);") == 1
    assert dns.c.count("->sport == 53ULL") == 1 and dns.c.count("->dport == 53ULL") == 1


def test_phase_3_predicates_are_assigned_once_in_t3(tmp_path):
    art = compile_text(tmp_path, """
app a {
  t1 { select tcp }
  t2 { n = count() by ip.src }
  t3 {
    when n > param lim = 10 { alert "one" }
    when n > param lim and tcp.syn { alert "two" }
  }
}
""")
    prog = art.ir
    p3 = [n.id for n in prog.preds if n.phase == 3]
    assert len(p3) == 3                                 # n > lim, and the two rule conditions
    assert pred_assignments(art.c) == {n.id: 1 for n in prog.preds}
    t3 = art.c[art.c.index("/* ---- T3"):]
    for pid in p3:
        assert f"P[{pid}] = " in t3
    assert t3.count("xm_find_m0(&k)") == 1             # the stat is read once for both rules


def test_all_specs_merged_assign_every_predicate_once():
    from compiler.driver import compile_files

    art = compile_files(SPECS)
    assert pred_assignments(art.c) == {n.id: 1 for n in art.ir.preds}
    shared = [n for n in art.ir.preds if len(n.users) > 1]
    assert shared, "the reference specs share predicates (udp.port == 53, tcp.syn and not tcp.ack, ip)"


def test_32_generated_apps_assign_every_predicate_once(tmp_path):
    art = compile_text(tmp_path, generate(32))
    prog = art.ir
    assert len(prog.apps) == 32
    assert pred_assignments(art.c) == {n.id: 1 for n in prog.preds}
    # merging pays: fewer maps and slots than stats and aggregates written
    n_stats = sum(len(a.stats) for a in art.model.apps)
    n_aggs = sum(len(s.aggregates) for a in art.model.apps for s in a.stats)
    assert len(prog.maps) < n_stats
    assert sum(len(m.slots) for m in prog.maps) < n_aggs
    assert len(_maps_in_c(art.c)) == sum(1 for m in prog.maps if m.kind == "fused")


# ---- the merge report ------------------------------------------------------------------------

def test_report_counts(dns):
    rep = report_mod.build(dns.ir, dns.model)
    before = dict(rep["before"])
    after = dict(rep["after"])
    before.pop("header_parses_per_packet")              # see test_report_layers_per_app
    after.pop("header_parses_per_packet")
    assert before == {"programs": 3, "predicates": 15, "maps": 3, "aggregates": 4, "map_lookups_per_packet_max": 3}
    assert after == {"programs": 1, "predicates": 7, "maps": 1, "aggregates": 3, "map_lookups_per_packet_max": 1}
    assert [p["text"] for p in rep["shared_predicates"]] == [
        "udp.dport == 53", "udp.sport == 53", "(p0 or p1)", "dns.qr", "(p3 and p2)"]
    assert rep["shared_slots"] == [{"slot": "s0", "map": "m0", "func": "count", "args": [],
                                    "uses": ["dns_count.per_src.count", "dns_bytes.per_src.count"]}]


# ---- parsing: the union of the layers the apps need -------------------------------------------------

def test_layers_are_the_union_of_what_apps_read(tmp_path):
    art = compile_text(tmp_path, """
app a { t1 { select ip.ttl <= 1 } t2 { n = count() by ip.src } }
app b { t1 { select vlan.id == 7 } }
""")
    # the parser's request: "ip" decodes IPv4 and IPv6
    assert sorted(art.ir.layers) == ["eth", "ip", "pkt", "vlan"]
    assert sorted(decoders_for(art.ir.layers)) == ["eth", "ipv4", "ipv6"]


def test_dns_needs_udp(tmp_path):
    art = compile_text(tmp_path, 'app a { t2 { n = count() by dns.rcode } }')
    assert sorted(art.ir.layers) == ["dns", "eth", "pkt"]      # what the app reads
    assert sorted(decoders_for(art.ir.layers)) == ["dns", "eth", "ipv4", "ipv6", "udp"]
    assert art.plan.decoders == decoders_for(art.ir.layers)


def test_udp_only_program_does_not_parse_tcp(tmp_path):
    art = compile_text(tmp_path, "app a { t1 { select udp.port == 53 } t2 { n = count() by ip.src } }")
    assert "tcp" not in art.ir.layers and "tcp" not in decoders_for(art.ir.layers)


def test_report_layers_per_app(tmp_path):
    art = compile_text(tmp_path, """
app a { t1 { select ip } t2 { n = count() by ip.src } }
app b { t1 { select udp } t2 { d = distinct(l4.dport) by ip.src } }
""")
    rep = report_mod.build(art.ir, art.model)
    by_layer = {x["layer"]: x["apps"] for x in rep["shared_layers"]}
    assert "a" not in by_layer.get("udp", [])
    assert "a" not in by_layer.get("tcp", [])


def test_needed_layers_is_what_the_ir_says(dns):
    assert needed_layers(dns.ir) == dns.ir.layers
    assert dns.manifest["layers"] == sorted(dns.ir.layers)
