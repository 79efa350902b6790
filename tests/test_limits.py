"""Every fixed bound of a program, tested at the bound and one past it.

At the bound the program compiles, loads into the kernel and computes what it
should on a real frame; one past it ``check`` stops with an error at the spec
text that went over, naming the bound (README: "Limits that are enforced").
Bounds of one spec line are checked by compiler/semantic.py, bounds of the
merged program (maps per program, per-CPU scratch) by compiler/limits.py on the
plan. Where the kernel itself is the reason, a test also shows the kernel
refusing the program one past the bound when the check is bypassed.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys

import pytest

from compiler import abi, limits
from compiler import defaults as D
from compiler import plan as plan_mod
from compiler.codegen import render_c
from compiler.driver import plan_program
from compiler.frontend import load
from compiler.pipeline import build_ir
from dsl.errors import SpecError
from engine_helpers import EngineMaker, run, stat, tcp, udp
from spec_helpers import ROOT, compile_text, cwd, write_specs

SPECS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.mon"))


@pytest.fixture
def kernel_engine(tmp_path, kernel):
    maker = EngineMaker("kernel", tmp_path)
    yield maker
    maker.close()


def check_errors(tmp_path, text: str) -> list[str]:
    """The headlines ``xdpmon check`` prints for ``text`` in a.mon (front end and
    program bounds), or [] when it is accepted."""
    names = write_specs(tmp_path, text)
    with cwd(tmp_path):
        try:
            model, sources = load(names)
            plan_program(model, sources)
        except SpecError as e:
            return [d.headline() for d in e.diagnostics]
    return []


# ---- bounds of one spec line (compiler/semantic.py) ---------------------------------------------

KEY8 = "ip.src, ip.dst, eth.src, eth.dst, pkt.ts, pkt.len, tcp.seq, tcp.ackno"        # 8 fields, 64 bytes
KEY65 = "ip.src, ip.dst, ipv6.src, eth.src, eth.dst, tcp.seq, tcp.flags"              # 7 fields, 65 bytes
SEND16 = ("ip.src, ip.dst, eth.src, eth.dst, pkt.ts, pkt.len, tcp.seq, tcp.ackno, tcp.window, tcp.flags, "
          "ip.ttl, ip.proto, tcp.sport, tcp.dport, ip.version, eth.type")


def _rule(action: str) -> str:
    return f"app a {{ t1 {{ select tcp }} t3 {{ when pkt.len > 0 {{ {action} }} }} }}\n"


# (id, spec at the bound, spec one past it, error one past it)
LINE_BOUNDS = [
    ("key_fields", f"app a {{ t2 {{ c = count() by ({KEY8}) }} }}\n",
     f"app a {{ t2 {{ c = count() by ({KEY8}, ip.ttl) }} }}\n",
     f"a.mon:1:29: error: a key has at most {D.MAX_KEY_FIELDS} fields, not 9"),
    ("key_bytes", f"app a {{ t2 {{ c = count() by ({KEY8}) }} }}\n",
     f"app a {{ t2 {{ c = count() by ({KEY65}) }} }}\n",
     f"a.mon:1:29: error: key is 65 bytes; the limit is {D.MAX_KEY_BYTES}"),
    ("send_fields", _rule(f"send packet({SEND16}) to asl limit 1/s"),
     _rule(f"send packet({SEND16}, ip.frag) to asl limit 1/s"),
     f"a.mon:1:51: error: send packet takes at most {D.MAX_SEND_FIELDS} fields"),
    ("distinct_registers", "app a { t2 { d = distinct(ip.src, registers=65536) } }\n",
     "app a { t2 { d = distinct(ip.src, registers=131072) } }\n",
     f"a.mon:1:45: error: registers must be a power of two from 16 to {D.DISTINCT_REGISTERS_MAX}, not 131072"),
    ("distinct_registers_keyed", "app a { t2 { d = distinct(ip.src, registers=1024) by ip.dst size 16 } }\n",
     "app a { t2 { d = distinct(ip.src, registers=2048) by ip.dst size 16 } }\n",
     f"a.mon:1:45: error: registers must be a power of two from 16 to {D.DISTINCT_REGISTERS_KEYED_MAX} "
     "for a keyed distinct, not 2048"),
    ("cms_width", "app a { t2 { c = cms(ip.src, width=1048576, depth=1) } }\n",
     "app a { t2 { c = cms(ip.src, width=2097152, depth=1) } }\n",
     f"a.mon:1:36: error: cms width must be a power of two up to {D.CMS_WIDTH_MAX}, not 2097152"),
    ("cms_depth", "app a { t2 { c = cms(ip.src, width=16, depth=16) } }\n",
     "app a { t2 { c = cms(ip.src, width=16, depth=17) } }\n",
     f"a.mon:1:46: error: cms depth must be at most {D.CMS_DEPTH_MAX}, not 17"),
    ("rate_limit", _rule('alert "x" limit 4294967295/s'), _rule('alert "x" limit 4294967296/s'),
     "a.mon:1:61: error: a rate limit must be between 1 and 4294967295, not 4294967296"),
    ("map_size", "app a { t2 { c = count() by ip.src size 16777216 } }\n",
     "app a { t2 { c = count() by ip.src size 16777217 } }\n",
     f"a.mon:1:41: error: size must be between 1 and {D.MAX_MAP_SIZE}, not 16777217"),
]


@pytest.mark.parametrize("at, over, error", [c[1:] for c in LINE_BOUNDS], ids=[c[0] for c in LINE_BOUNDS])
def test_line_bound(tmp_path, at, over, error):
    assert check_errors(tmp_path, at) == []
    assert check_errors(tmp_path, over) == [error]


# What one TCP frame from 198.18.0.1 gives at each bound, in the kernel (the
# 16 Mi-entry map is left out: preallocating it takes ~1.5 GB and tens of
# seconds, for a bound that is ours, not the kernel's).
FRAME = tcp(src="198.18.0.1", dst="198.19.0.1")
AT_BOUND_RESULT = {
    "key_fields": [{"key": {"ip.src": "198.18.0.1", "ip.dst": "198.19.0.1", "eth.src": "02:00:00:00:00:01",
                            "eth.dst": "02:00:00:00:00:02", "pkt.ts": 1_000_000_000, "pkt.len": len(FRAME),
                            "tcp.seq": 0, "tcp.ackno": 0}, "value": {"count": 1}}],
    "distinct_registers": {"value": {"distinct": 1}},
    "distinct_registers_keyed": [{"key": {"ip.dst": "198.19.0.1"}, "value": {"distinct": 1}}],
    "cms_width": {"value": {"cms_ip_src": {"total": 1, "width": 1 << 20, "depth": 1}}},
    "cms_depth": {"value": {"cms_ip_src": {"total": 1, "width": 16, "depth": 16}}},
}


@pytest.mark.parametrize("case", [c for c in LINE_BOUNDS if c[0] != "map_size"], ids=lambda c: c[0])
def test_line_bound_loads_and_counts(kernel_engine, case):
    name, at = case[0], case[1]
    eng = kernel_engine(at)
    run(eng, [FRAME])
    snap = eng.snapshot()
    assert snap["counters"]["frames"] == 1
    if name in ("send_fields", "rate_limit"):
        (ev,) = eng.events.take()
        assert snap["counters"]["app.a.events"] == 1
        if name == "send_fields":
            assert ev["type"] == "packet" and len(ev["fields"]) == D.MAX_SEND_FIELDS
            assert ev["fields"]["tcp.window"] == 8192 and ev["fields"]["ip.src"] == "198.18.0.1"
        else:
            assert (ev["type"], ev["message"]) == ("alert", "x")
    elif name in AT_BOUND_RESULT:
        got = stat(snap, "a", "c" if name.startswith(("key", "cms")) else "d")
        assert got == AT_BOUND_RESULT[name]


# ---- the enable mask: at most abi.ENABLE_BITS on-demand apps --------------------------------------

def _on_demand(n: int) -> str:
    return "".join(f"app od{i} {{ mode on_demand t2 {{ c = count() }} }}\n" for i in range(n))


def test_enable_bits_at_the_bound_compile(tmp_path):
    art = compile_text(tmp_path, _on_demand(abi.ENABLE_BITS))
    assert art.plan.n_enable_bits == abi.ENABLE_BITS
    assert sorted(a["enable_bit"] for a in art.manifest["apps"]) == list(range(abi.ENABLE_BITS))
    assert "1ULL << 64" not in art.c and "1ULL << 63" in art.c


def test_enable_bits_past_the_bound_is_a_check_error(tmp_path):
    (err,) = check_errors(tmp_path, _on_demand(abi.ENABLE_BITS + 1))
    assert err == (f"a.mon:{abi.ENABLE_BITS + 1}:17: error: app 'od{abi.ENABLE_BITS}' is on-demand app number "
                   f"{abi.ENABLE_BITS + 1}; one program holds at most {abi.ENABLE_BITS} ({abi.ENABLE_BITS + 1} given)")


def test_always_on_apps_take_no_enable_bit(tmp_path):
    art = compile_text(tmp_path, "".join(f"app a{i} {{ t2 {{ c = count() }} }}\n" for i in range(80)))
    assert art.plan.n_enable_bits == 0 and all(a["enable_bit"] == -1 for a in art.manifest["apps"])


def test_enable_bit_64_works_in_the_kernel(kernel_engine):
    """The last bit of the mask gates its app: off, it counts nothing; on, it counts."""
    eng = kernel_engine(_on_demand(abi.ENABLE_BITS))
    last = f"od{abi.ENABLE_BITS - 1}"
    assert eng.manifest.app(last).enable_bit == abi.ENABLE_BITS - 1
    run(eng, [FRAME])
    assert stat(eng.snapshot(), last, "c") == {"value": {"count": 0}}
    eng.maps.set_enabled(last, (1 << 64) - 1)
    run(eng, [FRAME] * 2, t0=2_000_000_000)
    snap = eng.snapshot()
    assert stat(snap, last, "c") == {"value": {"count": 2}} and stat(snap, "od0", "c") == {"value": {"count": 0}}


# ---- maps per program: the kernel's MAX_USED_MAPS ------------------------------------------------

BASE = """\
app watch { t1 { select tcp } t2 { n = count() by ip.dst }
            t3 { when n > 0 { enable flood for 10s  alert "seen" limit 1/s } } }
app flood { mode on_demand t1 { select tcp } t2 { m = count() by ip.src } }
"""


def _cms_app(i: int) -> str:
    return f"app c{i} {{ t1 {{ select udp.dport == {i + 1} }} t2 {{ x = cms(ip.src, width=16, depth=1) }} }}\n"


def maps_spec(tmp_path, n_maps: int) -> str:
    """BASE (keyed maps, a ring buffer, an enable bit, a rate limiter) and as many
    one-map apps as make the merged program use ``n_maps`` kernel maps."""
    with cwd(tmp_path):
        write_specs(tmp_path, BASE)
        base = len(plan_mod.build(build_ir(load(["a.mon"])[0])).kernel_maps())
    return BASE + "".join(_cms_app(i) for i in range(n_maps - base))


def test_kernel_maps_are_the_maps_the_code_uses():
    """What the plan counts is what the C refers to (BCC: ``name.lookup``...), and
    every map the C declares is either counted or unused by the code."""
    with cwd(ROOT):
        model, sources = load(SPECS)
    plan = plan_program(model, sources)
    c = render_c(plan)
    declared = set(re.findall(r"^(?:BPF_\w+|XM_MAP)\((?:\"\w+\", [^,]+, [^,]+, )?(\w+)", c, re.M))
    used = {name for name in declared if re.search(rf"\b{name}\.\w+\(", c)}
    assert {m.name for m in plan.kernel_maps()} == used
    assert declared - used <= {"xm_rl", "xm_zero", "xm_ctl"}


@pytest.mark.kernel
@pytest.mark.parametrize("budget", [plan_mod.STAGE_BUDGET, 1])
def test_kernel_counts_the_maps_each_stage_uses(budget):
    """Per stage (each a program of its own), the maps the plan says the code uses
    are the maps the kernel counts; specs/ in one stage, then in 15."""
    from runtime.dataplane.loader import load as load_program

    with cwd(ROOT):
        model, sources = load(SPECS)
    plan = plan_program(model, sources, stage_budget=budget)
    loaded = load_program(render_c(plan), stages={"map": abi.STAGES_MAP if plan.staged else None,
                                                  "functions": [st.function for st in plan.stages]})
    try:
        assert [s.n_maps for s in loaded.stages] == [len(plan.stage_maps(st)) for st in plan.stages]
        assert len(plan.stages) == (1 if budget > 1 else 15)
    finally:
        loaded.close()


@pytest.mark.kernel
def test_kernel_counts_the_maps_the_plan_counts():
    from runtime.dataplane.loader import load as load_program

    with cwd(ROOT):
        model, sources = load(SPECS)
    plan = plan_program(model, sources)
    loaded = load_program(render_c(plan))
    try:
        assert loaded.info.n_maps == len(plan.kernel_maps()) == 22   # 11 fixed (5 of them the filters')
        assert loaded.warnings == []
        assert ctypes.sizeof(loaded.bpf["xm_scratch"].sLeaf) == plan.scratch_size
    finally:
        loaded.close()


def test_maps_at_the_bound_compile(tmp_path):
    spec = maps_spec(tmp_path, abi.MAX_MAPS)
    assert check_errors(tmp_path, spec) == []


def test_maps_past_the_bound_is_a_check_error(tmp_path):
    spec = maps_spec(tmp_path, abi.MAX_MAPS + 1)
    n_stat = abi.MAX_MAPS + 1 - 11 - 1          # 11 fixed maps (5 of them the filters'), 1 ring buffer
    line = spec.count("\n")
    assert check_errors(tmp_path, spec) == [
        f"a.mon:{line}:50: error: this needs a cms map, map number 65 of the merged program; the kernel allows "
        f"64 maps per program (65 needed: 11 fixed, {n_stat} for statistics, 1 ring buffer)"]


def test_maps_past_the_bound_cli(tmp_path):
    spec = maps_spec(tmp_path, abi.MAX_MAPS + 1)
    (tmp_path / "a.mon").write_text(spec)
    p = subprocess.run([sys.executable, "-m", "runtime.cli", "check", "a.mon"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2, p.stderr
    assert "the kernel allows 64 maps per program" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""
    assert "^" in p.stderr.splitlines()[2]           # the source line, then the caret


def test_maps_at_the_bound_load_and_work(kernel_engine, tmp_path):
    spec = maps_spec(tmp_path, abi.MAX_MAPS)
    eng = kernel_engine(spec)
    assert eng.loaded.info.n_maps == abi.MAX_MAPS
    assert eng.loaded.warnings == []
    n_cms = spec.count("app c")
    last = n_cms - 1
    # A SYN: watch counts it and enables flood; the second SYN is counted by flood too;
    # a UDP frame to the last cms app's port reaches the 64th map.
    run(eng, [FRAME, FRAME, udp(src="198.18.0.9", dport=last + 1)])
    snap = eng.snapshot()
    assert stat(snap, "watch", "n") == [{"key": {"ip.dst": "198.19.0.1"}, "value": {"count": 2}}]
    assert stat(snap, "flood", "m") == [{"key": {"ip.src": "198.18.0.1"}, "value": {"count": 1}}]
    assert stat(snap, f"c{last}", "x")["value"]["cms_ip_src"]["total"] == 1
    assert stat(snap, "c0", "x")["value"]["cms_ip_src"]["total"] == 0


@pytest.mark.kernel
def test_the_kernel_refuses_one_map_more(tmp_path):
    """Bypassing the check: the kernel itself rejects the 65th map (E2BIG)."""
    from runtime.dataplane.loader import LoadError, load as load_program

    spec = maps_spec(tmp_path, abi.MAX_MAPS + 1)
    with cwd(tmp_path):
        write_specs(tmp_path, spec)
        plan = plan_mod.build(build_ir(load(["a.mon"])[0]))
    assert len(plan.kernel_maps()) == abi.MAX_MAPS + 1 and limits.check(plan)
    with pytest.raises(LoadError) as info:
        load_program(render_c(plan)).close()
    assert info.value.reason == ("the program is more than the kernel takes (E2BIG): The total number of maps per "
                                 "program has reached the limit of 64")
    assert (info.value.kind, info.value.bug) == ("too_big", False)


# ---- per-CPU scratch: the kernel's largest per-CPU value --------------------------------------------

def _or_terms(n: int) -> str:
    """One app whose select is an n-way ``or``: n + 1 predicates."""
    terms = " or ".join(f"tcp.dport == {i}" for i in range(1, n + 1))
    return f"app big {{ t1 {{ select {terms} }} t2 {{ n = count() }} }}\n"


def _terms_for_scratch(size: int) -> int:
    # scratch = head + P[] (predicates padded to 8) + reads, rounded up to 8; the head is
    # 16 + 8 * reads, plus the packet and its time as T1 alone is over the stage budget
    # (so the program is staged); here reads = 1 and predicates = terms + 1 (the or)
    head = 16 + 8 + 8 + abi.PKT_STRUCT_MAX
    return (size - head - 1) // 8 * 8 - 1


@pytest.mark.slow
def test_scratch_at_the_bound_compiles(tmp_path):
    names = write_specs(tmp_path, _or_terms(_terms_for_scratch(abi.PERCPU_VALUE_MAX)))
    with cwd(tmp_path):
        model, sources = load(names)
        plan = plan_program(model, sources)
    assert plan.staged and plan.scratch_size == abi.PERCPU_VALUE_MAX


@pytest.mark.slow
def test_scratch_past_the_bound_is_a_check_error(tmp_path):
    n = _terms_for_scratch(abi.PERCPU_VALUE_MAX) + 1
    assert check_errors(tmp_path, _or_terms(n)) == [
        f"a.mon:1:1: error: with app 'big' the merged program needs 32776 bytes of per-CPU scratch "
        f"({n + 1} predicates, room for 1 statistic value read by rules); the kernel's limit for a "
        f"per-CPU value is 32768 bytes"]


# ---- warnings are errors in the tests ------------------------------------------------------------

@pytest.mark.kernel
def test_generated_c_warnings_are_errors_here():
    """The loader compiles with -Wall -Wextra; the suite (tests/conftest.py) makes
    warnings errors, so a warning in any generated program fails its test."""
    from runtime.dataplane.loader import LoadError, load as load_program

    src = ("int xdpmon_main(struct xdp_md *ctx) { __u64 x = 1ULL << 64; "
           "return XDP_PASS + (int)(x & 0); }\n")
    with pytest.raises(LoadError, match=r"main\.c:1:\d+: shift count >= width of type"):
        load_program(src).close()


# ---- stages: the kernel's MAX_TAIL_CALL_CNT ------------------------------------------------------

def _stage_errors(tmp_path, n_maps: int) -> tuple[int, list[str]]:
    """A program of ``n_maps`` one-map apps, every map block in a stage of its own."""
    names = write_specs(tmp_path, "".join(_cms_app(i) for i in range(n_maps)))
    with cwd(tmp_path):
        model, sources = load(names)
        plan = plan_mod.build(build_ir(model), stage_budget=1)
    return len(plan.stages), [d.headline() for d in limits.check(plan)]


def test_stages_at_the_bound(tmp_path):
    assert _stage_errors(tmp_path, abi.MAX_STAGES - 1) == (abi.MAX_STAGES, [])


def test_stages_past_the_bound(tmp_path):
    n, errors = _stage_errors(tmp_path, abi.MAX_STAGES)
    assert n == abi.MAX_STAGES + 1
    assert errors == [
        f"a.mon:{abi.MAX_STAGES}:50: error: the merged program needs 35 stages of about 12,000 instructions "
        f"(this is in stage 35); the kernel chains at most 33 tail calls (MAX_TAIL_CALL_CNT), so 34 stages"]


@pytest.mark.kernel
def test_stages_at_the_bound_run(tmp_path):
    """34 programs chained by 33 tail calls: a frame reaches the last one."""
    from runtime.engines import open_engine

    names = write_specs(tmp_path, "".join(_cms_app(i) for i in range(abi.MAX_STAGES - 1)))
    with cwd(tmp_path):
        from compiler.driver import compile_files
        art = compile_files(names, replay=True, stage_budget=1)
    eng = open_engine("kernel", art)
    try:
        assert len(eng.loaded.stages) == abi.MAX_STAGES
        run(eng, [udp(dport=abi.MAX_STAGES - 1)])         # the last app's port
        snap = eng.snapshot()
        assert snap["counters"]["stage.tail_call_failed"] == 0 and snap["counters"]["verdict.pass"] == 1
        assert stat(snap, f"c{abi.MAX_STAGES - 2}", "x")["value"]["cms_ip_src"]["total"] == 1
    finally:
        eng.close()
