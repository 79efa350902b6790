"""Big programs load and compute right: 256 merged apps of mixed kinds (run as
stages chained by tail calls, against the reference interpreter), and single
apps with 64 rules, 300 statistics and a 2,000-term predicate (exact values on
real frames). Kernel tests; they take seconds each (marked slow).
"""

from __future__ import annotations

import pytest

from benchmarks.specgen import generate
from engine_helpers import EngineMaker, S, run, stat, tcp
from runtime.engines.reference.engine import ReferenceEngine
from test_differential import assert_same, run_both, traffic

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture
def kernel_engine(tmp_path):
    maker = EngineMaker("kernel", tmp_path)
    yield maker
    maker.close()


def test_256_mixed_apps_load_as_stages_and_match_the_reference(kernel_engine):
    eng = kernel_engine(generate(256))
    stages = eng.manifest.raw["stages"]["functions"]
    assert len(stages) >= 2 and len(eng.loaded.stages) == len(stages)
    assert eng.loaded.verified_insns < 1_000_000 and eng.loaded.warnings == []
    art = kernel_engine.arts[-1]
    ref = ReferenceEngine(art)
    frames = traffic("mixed")[:3000] + traffic("syn_flood")[:3000]
    run_both(eng, ref, frames, "256 apps")
    assert_same(eng, ref, art.manifest, "256 apps")
    c = eng.snapshot()["counters"]
    n = len(frames)
    assert n > 4000 and c["frames"] == n and c["stage.tail_call_failed"] == 0 and c["verdict.pass"] == n


def test_one_app_with_64_rules(kernel_engine):
    rules = " ".join(f'when pkt.len > {60 + j} {{ alert "r{j}" limit 1/s }}' for j in range(64))
    eng = kernel_engine(f"app a {{ t1 {{ select tcp }} t3 {{ {rules} }} }}\n")
    run(eng, [tcp(pad=100 - 54)])                   # a 100-byte frame: rules 0..39 fire
    c = eng.snapshot()["counters"]
    assert [c[f"rule.a.r{j}.fired"] for j in range(64)] == [1] * 40 + [0] * 24
    assert sorted(e["message"] for e in eng.events.take()) == sorted(f"r{j}" for j in range(40))


def test_one_app_with_300_statistics(kernel_engine):
    stats = " ".join(f"st{j} = count() by ip.src where pkt.len > {j}" for j in range(300))
    eng = kernel_engine(f"app a {{ t1 {{ select tcp }} t2 {{ {stats} }} }}\n")
    run(eng, [tcp(pad=200 - 54)] * 2)              # two 200-byte frames
    snap = eng.snapshot()
    one = [{"key": {"ip.src": "198.18.0.1"}, "value": {"count": 2}}]
    assert [stat(snap, "a", f"st{j}") for j in range(300)] == [one] * 200 + [[]] * 100


def test_a_2000_term_predicate(kernel_engine):
    terms = " or ".join(f"tcp.dport == {j}" for j in range(1, 2001))
    eng = kernel_engine(f"app a {{ t1 {{ select {terms} }} t2 {{ n = count() }} }}\n")
    run(eng, [tcp(dport=1), tcp(dport=1999), tcp(dport=2000), tcp(dport=2001), tcp(dport=0)], t0=S)
    assert stat(eng.snapshot(), "a", "n") == {"value": {"count": 3}}
