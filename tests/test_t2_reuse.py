"""T3 reads the entry T2 just found or inserted instead of looking it up again
(compiler/plan.py t2_entries_reused): which maps keep their pointer, most lookups saved
first, two in a small program and one in a larger one, and what the C then does.
"""

from __future__ import annotations

import re

from compiler import abi
from compiler import plan as P
from compiler.driver import compile_files
from benchmarks.perf import configs as C


def holding(art, app: str, stat: str) -> str:
    (m,) = [m["name"] for m in art.manifest["maps"] if any(u["app"] == app and u["stat"] == stat for u in m["uses"])]
    return m


def nine():
    return compile_files([str(p) for p in C.spec_paths(C.all_spec_names())])


def test_the_nine_keep_the_syn_counts_first_then_the_per_source_entry():
    art = nine()
    syns, ports = holding(art, "syn_flood", "syns"), holding(art, "port_scan", "ports")
    assert art.plan.stages[0].cost <= P.STAGE_BUDGET // 4
    # the SYN counts are read by three rules by the packet's ip.dst (syn_flood, flow_watch,
    # dns_amplification), the per-source entry by two (port_scan, ttl_expiry)
    assert art.plan.t2_entries_reused == [syns, ports]
    c = art.c
    for m in (syns, ports):
        assert c.count(f"    t2_{m} = v;") == 1
    for app in ("syn_flood", "flow_watch"):
        block = c[c.index(f"/* t3 of {app} "):]
        block = block[:block.index("XM_FRESH(P);")]
        assert f"r_{syns}_ip_dst = t2_{syns};" in block
        # looked up again only where T2 did not run
        assert re.search(rf"if \(r_{syns}_ip_dst_ok && !r_{syns}_ip_dst\)", block)


def test_one_kept_takes_the_map_that_saves_most(monkeypatch):
    monkeypatch.setattr(abi, "T2_ENTRIES_KEPT_SMALL", 1)
    art = nine()
    assert art.plan.t2_entries_reused == [holding(art, "syn_flood", "syns")]


def test_the_map_most_rules_read_comes_first_and_ties_go_in_map_order(tmp_path):
    spec = tmp_path / "s.mon"
    spec.write_text("""
app a {
  t1 { select tcp }
  t2 { bysrc = count() by ip.src  bydst = count() by ip.dst }
  t3 { when bysrc > 5 { alert "src" }  when bydst > 5 { alert "dst" } }
}
app b {
  t1 { select tcp }
  t2 { other = count() by ip.src }
  t3 { when other > 7 { alert "b" } }
}""")
    art = compile_files([str(spec)])
    src, dst = holding(art, "a", "bysrc"), holding(art, "a", "bydst")
    assert holding(art, "b", "other") == src               # one map keyed by ip.src, read by two rules
    assert art.plan.t2_entries_reused == [src, dst]
    alone = tmp_path / "t.mon"
    alone.write_text(spec.read_text().split("app b")[0])
    art = compile_files([str(alone)])
    order = [m.name for m in art.plan.maps]
    kept = art.plan.t2_entries_reused
    assert sorted(kept, key=order.index) == kept and len(kept) == 2       # one read each: map order
