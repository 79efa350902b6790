"""The stage breakdown of benchmarks/bench_breakdown.py (benchmarks/perf/breakdown.py): the
cuts are where they say, every map's T2 block can be left out, the arithmetic of stage
costs, and on the kernel a cut program runs and its check holds it to exactly what the
stages it keeps must do (and catches a cut that does less).
"""

from __future__ import annotations

import pytest

from benchmarks.perf import breakdown as B
from benchmarks.perf import checks as K
from benchmarks.perf import configs as C
from benchmarks.perf import frames as F
from benchmarks.perf import runner as Rn
from compiler.driver import compile_files


def programs():
    from benchmarks.four_apps import SPECS
    return {"nine": [str(p) for p in C.spec_paths(C.all_spec_names())], "four": list(SPECS)}


@pytest.mark.parametrize("prog", ["nine", "four"])
def test_every_cut_is_in_the_program_once(prog):
    art = compile_files(programs()[prog])
    c = art.c
    ends = []
    for stage in B.STAGES:
        cut = B.cut(c, stage)
        if stage.end is None:
            assert cut == c
            continue
        assert cut.count("bench_breakdown: cut after stage") == 1
        ends.append(cut.index("bench_breakdown: cut after stage"))
    assert ends == sorted(ends) and len(set(ends)) == len(B.STAGES) - 1      # in the stages' order
    names = [m["name"] for m in art.manifest["maps"] if m["uses"]]
    assert len(names) == {"nine": 8, "four": 5}[prog]
    for m in names:
        off = B.without_map(c, m)
        assert off.count("if (0 && ") == c.count("if (0 && ") + 1
        at = off.index("if (0 && ")
        assert off[:at].rstrip().endswith("*/") and f"/* {m}: " in off[at - 400:at]    # right after its comments
        assert off.replace("if (0 && ", "if (", 1) == c


def test_a_missing_anchor_is_an_error():
    with pytest.raises(ValueError, match="occurs 0 times"):
        B.cut("int xdpmon_main(void) { return 0; }", B.STAGES[2])
    with pytest.raises(ValueError, match="m_nothere"):
        B.without_map(compile_files(programs()["four"]).c, "m_nothere")


def test_stage_costs_are_differences_of_neighbouring_cuts():
    data = {"f": {"floor": [10, 11], "a": [15, 20], "b": [18, 22], "c": [30, 23]}}
    assert B.stage_costs(data, "f", "floor", ["a", "b", "c"]) == [[5, 9], [3, 2], [12, 1]]


def _run(t, frame, repeat=20):
    return Rn.run_checked(t, frame, repeat, run_index=0)


def test_a_cut_program_runs_and_its_check_is_exact(kernel):
    """The four apps cut after T1: counters grow exactly; no statistic does, so the full
    check of the harness refuses the run, and the stage's check accepts it. Cut after the
    parser: not even the counters grow, which the counters stage's check refuses."""
    paths = programs()["four"]
    frame = F.by_name("tcp_established")
    t1 = C.XdpmonProgram("t1", paths, c_edit=lambda c: B.cut(c, B.STAGES[3]))
    parse = C.XdpmonProgram("parse", paths, c_edit=lambda c: B.cut(c, B.STAGES[0]))
    try:
        t = Rn.prepare("t1", t1, new_flow=False)
        t.check = B.StageCheck("t1", t1, 3)
        before = t1.counters()
        _run(t, frame)
        after = t1.counters()
        assert after["parse.ok"] - before["parse.ok"] == 20 and after["frames"] - before["frames"] == 20
        assert t1.stat("traffic_accounting", "per_dst") == []
        t.check = K.RunCheck("t1", t1)
        with pytest.raises(K.FrameCheckError, match="per_dst"):
            _run(t, frame)
        p = Rn.prepare("parse", parse, new_flow=False)
        p.check = B.StageCheck("parse", parse, 0)
        _run(p, frame)
        assert parse.counters()["frames"] == 0
        p.check = B.StageCheck("parse", parse, 1)
        with pytest.raises(K.FrameCheckError, match="counter parse.ok grew by 0, expected 20"):
            _run(p, frame)
    finally:
        t1.close()
        parse.close()


def test_without_a_map_its_statistic_is_not_kept(kernel):
    """The nine without traffic_accounting's per_dst update: nothing counted there, all
    else checked (the new-flow SYN's new keys in port_scan and half_open_tcp)."""
    nine = [p for p in C.spec_paths(C.all_spec_names())]
    art = compile_files([str(p) for p in nine])
    (m,) = [m["name"] for m in art.manifest["maps"] if {"app": "traffic_accounting", "stat": "per_dst"}.items()
            <= m["uses"][0].items()]
    prog = C.XdpmonProgram("without", nine, c_edit=lambda c: B.without_map(c, m))
    try:
        t = Rn.prepare("without", prog)
        t.check = B.MapOffCheck("without", prog, m)
        assert not t.check.has_accounting and len(t.check.src_maps) >= 2
        _run(t, F.by_name("tcp_syn_new_flow"))
        _run(t, F.by_name("dns_response"))
        assert prog.stat("traffic_accounting", "per_dst") == []
        assert prog.counters()["frames"] == 40
    finally:
        prog.close()
