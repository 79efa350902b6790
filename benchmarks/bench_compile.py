"""Compiler speed: the Python side of ``xdpmon compile`` -- front end, IR and
its passes, code generation (C, ASL stubs, manifest), no kernel -- for

- every spec in specs/ merged (target: under 200 ms, median of several runs), and
- 32 generated apps merged (benchmarks/specgen.py; target: under 1 s).

As information, when BPF is usable here (root, BCC), also the kernel side:
the time BCC and the verifier take to load each program, and the program's
size (instructions verified, instructions after translation).

Run with ``python -m benchmarks compile`` (or ``make bench``). Work done once
per process (building the grammar's LALR tables, compiling the Jinja2
templates) is done before timing and reported separately.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS_TARGET_MS = 200.0
GEN_TARGET_S = 1.0
GEN_APPS = 32
SPEC_RUNS = 15
GEN_RUNS = 5


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _stages(paths) -> dict[str, float]:
    """One compile split into its stages (seconds each), for the breakdown line."""
    from compiler import manifest as manifest_mod
    from compiler import plan as plan_mod
    from compiler.codegen import render_c
    from compiler.frontend import load
    from compiler.pipeline import build_ir
    from compiler.stubs import render_stub

    out = {}
    t = time.perf_counter()
    model, _ = load(paths)
    out["front end"] = time.perf_counter() - t
    t = time.perf_counter()
    prog = build_ir(model)
    out["IR + passes"] = time.perf_counter() - t
    t = time.perf_counter()
    plan = plan_mod.build(prog)
    out["plan"] = time.perf_counter() - t
    t = time.perf_counter()
    render_c(plan)
    for a in prog.apps:
        render_stub(plan, a.name)
    manifest_mod.build(plan)
    out["codegen"] = time.perf_counter() - t
    return out


def _breakdown(paths, runs: int) -> str:
    samples = [_stages(paths) for _ in range(runs)]
    return ", ".join(f"{k} {statistics.median(s[k] for s in samples) * 1000:.1f} ms" for k in samples[0])


def _kernel_reason() -> str | None:
    import os

    if os.geteuid() != 0:
        return "not root"
    try:
        import bcc  # noqa: F401
    except Exception as e:
        return f"no BCC ({e})"
    return None


def _load_info(c_source: str) -> str:
    from runtime.dataplane.loader import LoadError, load

    t = time.perf_counter()
    try:
        loaded = load(c_source)
    except LoadError as e:
        return f"did not load: {e}"
    elapsed = time.perf_counter() - t
    info = loaded.info
    loaded.close()
    return (f"load {elapsed * 1000:.0f} ms; {info.verified_insns} insns verified, "
            f"{info.xlated_insns} xlated, {info.jited_bytes} bytes jited")


def main() -> dict:
    from benchmarks.specgen import generate
    from compiler.driver import compile_files
    from dsl.parser import _lark

    specs = sorted((ROOT / "specs").glob("*.mon"))
    t = time.perf_counter()
    _lark()
    art = compile_files(specs)              # also compiles and caches the templates
    once_ms = (time.perf_counter() - t) * 1000

    spec_s = _median(lambda: compile_files(specs), SPEC_RUNS)
    spec_ms = spec_s * 1000
    results = {
        "once per process (grammar, templates)": f"{once_ms:.0f} ms",
        f"specs/ ({len(specs)} files, {len(art.ir.apps)} apps), median of {SPEC_RUNS}":
            f"{spec_ms:.1f} ms (target {SPECS_TARGET_MS:.0f} ms) {'PASS' if spec_ms < SPECS_TARGET_MS else 'FAIL'}",
        "  breakdown": _breakdown(specs, 5),
    }

    with tempfile.TemporaryDirectory(prefix="xdpmon-bench-") as tmp:
        gen = Path(tmp) / "gen32.mon"
        gen.write_text(generate(GEN_APPS))
        gen_art = compile_files([gen])
        assert len(gen_art.ir.apps) == GEN_APPS
        gen_s = _median(lambda: compile_files([gen]), GEN_RUNS)
        results[f"{GEN_APPS} generated apps ({len(gen_art.ir.maps)} maps, {len(gen_art.ir.preds)} predicates), "
                f"median of {GEN_RUNS}"] = \
            f"{gen_s * 1000:.1f} ms (target {GEN_TARGET_S * 1000:.0f} ms) {'PASS' if gen_s < GEN_TARGET_S else 'FAIL'}"
        results["  breakdown "] = _breakdown([gen], 3)

        reason = _kernel_reason()
        if reason is None:
            results["kernel: specs/ merged (info)"] = _load_info(art.c)
            results[f"kernel: {GEN_APPS} generated apps (info)"] = _load_info(gen_art.c)
        else:
            results["kernel (info)"] = f"skipped: {reason}"
    return results


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
