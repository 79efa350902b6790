"""The ``xdpmon`` command line.

Exit status: 0 all well; 2 errors in the specs (or the command line, or a place
--out cannot write), including maps that need more kernel memory than the budget
(nothing is loaded); 1 a runtime problem (e.g. the kernel refused something, or
had not the memory for the maps); 70 an internal error (a bug); 130 interrupted
(Ctrl-C).
Spec errors are printed as ``path:line:col: error: ...`` with the source line
and a caret, in colour on a terminal. No Python traceback reaches the user.
"""

from __future__ import annotations

import contextlib

import os
import sys

import click

from dsl.errors import SpecError, render

from . import interrupt, load_failures

EXIT_SPEC = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def _color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def report_spec_error(err: SpecError) -> None:
    render(err.diagnostics, err.sources, color=_color(sys.stderr))
    n = sum(1 for d in err.diagnostics if d.severity == "error")
    print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)


def load_or_exit(files):
    from compiler.frontend import load

    try:
        return load(list(files))
    except SpecError as e:
        report_spec_error(e)
        sys.exit(EXIT_SPEC)


def compile_or_exit(program, sources, replay: bool = False, plan_only: bool = False):
    """Merge, plan and (unless ``plan_only``) print the program; a merged program
    past a kernel bound (compiler/limits.py) is a spec error: reported, exit 2."""
    from compiler.driver import compile_program, plan_program

    try:
        if plan_only:
            return plan_program(program, sources, replay=replay)
        return compile_program(program, sources, replay=replay)
    except SpecError as e:
        report_spec_error(e)
        sys.exit(EXIT_SPEC)


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        from compiler.memory import parse_size

        try:
            return value if isinstance(value, int) else parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


memory_budget_option = click.option(
    "--memory-budget", type=_Size(), default=None,
    help="Kernel memory the program's maps may take, e.g. 2Gi or 512Mi (default: a quarter of physical memory).")


def memory_or_exit(plan, sources, budget_bytes: int | None, refuse: bool = True):
    """The maps' kernel memory (compiler/memory.py), the budget and the errors when
    the maps need more; with ``refuse`` those are a spec error (at the statistic
    that needs the most): reported, exit 2."""
    from compiler import memory

    est, budget = memory.estimate(plan), memory.Budget.of(budget_bytes)
    over = memory.check(est, budget)
    if over and refuse:
        report_spec_error(SpecError(over, sources))
        sys.exit(EXIT_SPEC)
    return est, budget, over


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def app_summary(app) -> str:
    """One line describing a checked app."""
    stats = ", ".join(s.name for s in app.stats) or "-"
    params = ", ".join(f"{p.name}={p.default}" for p in app.params) or "-"
    t1 = "all packets" if app.select is None else "select"
    return (f"{app.name}: mode {app.mode}; t1 {t1}; t2 {_plural(len(app.stats), 'stat')} ({stats}); "
            f"t3 {_plural(len(app.rules), 'rule')}; params {params}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xdpmon")
def cli():
    """xdpmon: many network monitoring apps, one XDP program."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--notes", is_flag=True, help="Also print notes (accepted, but worth knowing).")
@click.option("--memory", "show_memory", is_flag=True, help="Also print each map's kernel memory and the total.")
@memory_budget_option
def check(files, notes, show_memory, memory_budget):
    """Parse and check spec FILES; print one line per app."""
    from compiler.memory import fmt_bytes, render as render_memory

    program, sources = load_or_exit(files)
    plan = compile_or_exit(program, sources, plan_only=True)
    est, budget, _ = memory_or_exit(plan, sources, memory_budget)
    for app in program.apps:
        click.echo(app_summary(app))
    if show_memory:
        click.echo(render_memory(est, budget), nl=False)
    else:
        click.echo(f"(kernel memory {fmt_bytes(est.total)} of a {fmt_bytes(budget.bytes)} budget; "
                   "--memory lists the maps)", err=True)
    from compiler import triggers
    found = list(program.notes) + _asl_notes(program) + triggers.notes(plan.prog)
    if found:
        if notes:
            render(found, sources, color=_color(sys.stderr))
        else:
            click.echo(f"({_plural(len(found), 'note')}; --notes shows them)", err=True)


def _asl_notes(program) -> list:
    """A handler file that is not where ``asl "..."`` says (runtime/asl/host.py looks for it)."""
    from dsl.errors import Diagnostic
    from runtime.asl.host import resolve_asl

    return [Diagnostic(f"asl file '{a.asl}' not found (in the current directory or next to the spec); "
                       f"replay --asl runs the generated stub instead", a.asl_span or a.span, severity="note")
            for a in program.apps if a.asl and resolve_asl(a.asl, a.file) is None]


def _print_code(text: str, lexer: str) -> None:
    """Source code to stdout: syntax-highlighted on a terminal, plain otherwise."""
    if _color(sys.stdout):
        from rich.console import Console
        from rich.syntax import Syntax
        Console().print(Syntax(text, lexer, line_numbers=False, word_wrap=False))
    else:
        sys.stdout.write(text)


def _dump(stage: str, files) -> None:
    import pprint

    from compiler import ir as ir_mod
    from compiler.pipeline import build_ir
    from dsl.parser import parse_bytes, read_source

    if stage == "ast":
        for f in files:
            try:
                _, spec, diags = parse_bytes(read_source(f), f)
            except OSError as e:
                raise click.UsageError(str(e))
            except SpecError as e:
                report_spec_error(e)
                sys.exit(EXIT_SPEC)
            for app in spec.apps:
                click.echo(pprint.pformat(app, width=110, sort_dicts=False))
        return
    program, sources = load_or_exit(files)
    if stage == "model":
        for app in program.apps:
            click.echo(pprint.pformat(app, width=110, sort_dicts=False))
    elif stage in ("lower", "intern", "merge", "ir"):
        prog = build_ir(program, upto=stage)
        if stage in ("lower",):
            for a in prog.apps:
                click.echo(f"{a.name}: select {ir_mod.pstr(a.select) if a.select is not None else '-'}")
                for r in a.rules:
                    click.echo(f"  rule {r.id}: when {ir_mod.pstr(r.cond)}")
            for ps in prog.pending_stats:
                click.echo(f"  stat {ps.app}.{ps.stat.name}: guard {ir_mod.pstr(ps.guard)}")
        else:
            click.echo(ir_mod.dump(prog), nl=False)
    else:
        art = compile_or_exit(program, sources)
        if stage == "plan":
            from compiler.plan import dump as dump_plan
            sys.stdout.write(dump_plan(art.plan))
        elif stage == "c":
            sys.stdout.write(art.c)
        elif stage == "stubs":
            for name, text in art.stubs.items():
                click.echo(f"# ==== {name} ====")
                sys.stdout.write(text)
        elif stage == "manifest":
            sys.stdout.write(art.manifest_json())


def _load_info(c_source: str, stages: dict | None = None):
    """The loaded program's numbers for the report, and the LoadError if it did not load."""
    from runtime.dataplane.loader import LoadError, load

    try:
        loaded = load(c_source, stages=stages)
    except LoadError as e:
        return {"error": e.reason, "log": e.log, "c_line": e.c_line, "c_text": e.c_text}, e
    info = loaded.info
    _warn_generated(loaded.warnings)
    loaded.close()
    return {"maps": info.n_maps, "xlated_insns": info.xlated_insns, "xlated_bytes": info.xlated_bytes, "jited_bytes": info.jited_bytes,
            "verified_insns": loaded.verified_insns, "prog_id": info.id, "stages": len(loaded.stages)}, None


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the C program and ASL stubs; write nothing.")
@click.option("--out", "out", type=click.Path(file_okay=False), help="Write the C program, manifest and stubs here.")
@click.option("--force", is_flag=True, help="With --out: overwrite existing ASL stubs.")
@click.option("--report", is_flag=True, help="Print the merge report.")
@click.option("--json", "as_json", is_flag=True, help="With --report: as JSON.")
@click.option("--load-check", is_flag=True, help="Load into the kernel (no attach) and print the verifier's verdict.")
@click.option("--replay", is_flag=True, help="Build the replay variant (capture time precedes each frame).")
@click.option("--dump", "dump", type=click.Choice(["ast", "model", "lower", "intern", "merge", "ir", "plan", "c", "stubs",
                                                   "manifest"]), help="Print one stage of the pipeline and stop.")
@memory_budget_option
def compile(files, dry_run, out, force, report, as_json, load_check, replay, dump, memory_budget):
    """Compile spec FILES into one XDP program, ASL stubs and a manifest."""
    import json
    from pathlib import Path

    from compiler import abi, memory, report as report_mod
    from compiler.driver import write

    if dump:
        _dump(dump, files)
        return
    if not (dry_run or out or report or load_check):
        raise click.UsageError("say what to do: --dry-run, --out DIR, --report or --load-check")
    program, sources = load_or_exit(files)
    art = compile_or_exit(program, sources, replay=replay)
    if dry_run:
        _print_code(art.c, "c")
        for name, text in art.stubs.items():
            click.echo(f"\n# ==== ASL stub: {name} ====")
            _print_code(text, "python")
    elif out:
        try:
            done = write(art, Path(out), force=force)
        except OSError as e:            # a place that cannot be written: the command line's fault
            click.echo(f"xdpmon: cannot write {e.filename or out}: {e.strerror or e}", err=True)
            sys.exit(EXIT_SPEC)
        for path, what in done:
            click.echo(f"{path}: {what}", err=True)
    info = error = None
    if load_check or report:
        # Loading takes the maps' memory: above the budget, --load-check is refused
        # (exit 2) and the report says why it did not load
        est, budget, over = memory_or_exit(art.plan, sources, memory_budget, refuse=load_check)
        if over:
            info = {"error": f"its maps need {memory.fmt_bytes(est.total)}, above the memory budget of "
                             f"{memory.fmt_bytes(budget.bytes)}", "kind": "budget"}
        else:
            load_failures.survive_fatal_exits(art.manifest, "load check: FAILED" if load_check else load_failures.PREFIX)
            info, error = _load_info(art.c, art.manifest.get("stages"))
    if report:
        rep = report_mod.build(art.ir, program, info)
        rep["memory"] = est.to_json(budget)
        if as_json:
            rep.get("loaded", {}).pop("log", None)
            click.echo(json.dumps(rep, indent=2))
        else:
            click.echo(report_mod.render_text(rep), nl=False)
            click.echo("\n" + memory.render(est, budget), nl=False)
    if load_check:
        if error is not None:
            load_failures.report(error, art.manifest, "load check: FAILED")
            sys.exit(1)
        click.echo(f"load check: OK: verifier accepted {info['verified_insns']} instructions; "
                   f"{info['xlated_insns']} xlated ({info['xlated_bytes']} bytes), {info['jited_bytes']} bytes jited; "
                   f"{info['maps']} of {abi.MAX_MAPS} maps"
                   + (f" ({info['stages']} stages: verified over all, the rest of stage 0)"
                      if info["stages"] > 1 else ""))


def _warn_generated(warnings) -> None:
    """clang's warnings about the generated C: never expected, so shown."""
    for w in warnings or ():
        click.echo(f"xdpmon: warning: generated C line {w} (a bug in xdpmon's compiler: please report it)",
                   err=True)


def _open_engine_or_exit(engine: str, art, memory_budget: int | None = None):
    from runtime.dataplane.loader import LoadError
    from runtime.engines import open_engine

    if engine == "kernel":
        load_failures.survive_fatal_exits(art.manifest)
    try:
        eng = open_engine(engine, art, **({"memory_budget": memory_budget} if engine == "kernel" else {}))
        loaded = getattr(eng, "loaded", None)
        _warn_generated(loaded.warnings if loaded else None)
        return eng
    except SpecError as e:            # the maps need more memory than the budget: nothing loaded
        report_spec_error(e)
        sys.exit(EXIT_SPEC)
    except LoadError as e:
        load_failures.report(e, art.manifest)
        sys.exit(1)
    except PermissionError as e:
        click.echo(f"xdpmon: the kernel engine needs root and BPF ({e}); try --engine reference", err=True)
        sys.exit(1)


def _asl_host(art, eng, as_json: bool):
    """The ASL host of a replay: inline (capture order), changing the replayed program
    through a Controller on the capture's clock; emitted events as JSON lines on
    stdout (kept for the JSON output with --json)."""
    import io
    import logging

    from runtime.asl.host import AslHost, AslLoadError
    from runtime.control.blocklist import Blocklist
    from runtime.control.controller import Controller
    from runtime.export.events import EventWriter

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    clock = lambda: eng.stats.last_ts       # noqa: E731
    blocklist = Blocklist.for_program(art.manifest, eng.maps, clock)      # log-only: blocks count would-drops
    controller = Controller(art.manifest, eng.maps, clock, blocklist=blocklist)
    writer = EventWriter(stream=io.StringIO() if as_json else sys.stdout, interfaces=(), clock=clock, keep=as_json)
    try:
        host = AslHost(art.manifest, art.stubs, controller=controller, events=writer, snapshot=eng.app_snapshot,
                       clock=clock)
    except AslLoadError as e:
        eng.close()
        click.echo(f"xdpmon: {e}", err=True)
        sys.exit(EXIT_SPEC)
    for note in host.notes:
        click.echo(f"note: {note}", err=True)
    host.start()
    return host, writer


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--pcap", "captures", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A pcap or pcapng capture (Ethernet); repeat for several, replayed in order.")
@click.option("--engine", type=click.Choice(["kernel", "reference"]), default="kernel", show_default=True,
              help="kernel: the loaded program under BPF_PROG_TEST_RUN (root); reference: the Python interpreter.")
@click.option("--json", "as_json", is_flag=True, help="Print the final snapshot as JSON.")
@click.option("--asl", is_flag=True, help="Run the apps' ASL handlers (or the generated stubs) on the events.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1),
              help="Keys shown per statistic in the tables.")
@memory_budget_option
def replay(files, captures, engine, as_json, asl, top, memory_budget):
    """Replay captures through the program compiled from spec FILES; print the final snapshot.
    Ctrl-C stops the replay after the frame being run and prints what was replayed (partial)."""
    import json

    from runtime.engines.replay import Replay, backwards_warning, summary
    from runtime.ui.view import render

    program, sources = load_or_exit(files)
    art = compile_or_exit(program, sources, replay=True)
    eng = _open_engine_or_exit(engine, art, memory_budget)
    try:
        host, writer = _asl_host(art, eng, as_json) if asl else (None, None)
        rep = Replay(eng, host.deliver if host else None, keep_events=as_json, on_tick=host.tick if host else None)
        from runtime.engines.kernel import on_one_cpu

        # the kernel's test runs on one CPU: a statistic kept per CPU reads as one shared value
        # even where the captures' clocks go back
        with interrupt.calling(rep.interrupt), (on_one_cpu() if engine == "kernel" else contextlib.nullcontext()):
            rep.run(captures)
        for problem in rep.problems:
            click.echo(f"xdpmon: {problem}", err=True)
        for warning in rep.warnings + [backwards_warning(eng.stats)] * bool(eng.stats.backwards):
            click.echo(f"xdpmon: warning: {warning}", err=True)
        if rep.stopping:
            click.echo(f"xdpmon: interrupted {rep.stopped}: the snapshot is partial "
                       f"({eng.stats.frames:,} frames replayed)", err=True)
        if eng.events.dropped:
            click.echo(f"xdpmon: {eng.events.dropped:,} events dropped: the event queue "
                       f"({eng.events.maxsize:,}) was full", err=True)
        snap = eng.snapshot()
        asl_summary = None
        if host is not None:
            host.tick()
            host.stop()
            asl_summary = host.stats()
        if as_json:
            out = dict(snap, events=rep.events)
            st = eng.stats
            out["replay"] = {"frames": st.frames, "refused": st.refused, "refused_by": dict(sorted(st.refused_by.items())),
                             "cut": st.cut, "backwards": st.backwards, "engine": engine}
            if rep.stopping:
                out["replay"]["partial"] = True
            if asl_summary is not None:
                out["asl"] = asl_summary
                out["asl_events"] = writer.written
            click.echo(json.dumps(out, indent=2, default=str))
        else:
            render(snap, eng.manifest, top=top, asl=asl_summary, event_counts=rep.event_counts)
            click.echo(summary(eng.stats, engine) + ("; interrupted: the snapshot is partial" if rep.stopping else ""))
    finally:
        eng.close()
    sys.exit(EXIT_INTERRUPTED if rep.stopping else 1 if rep.problems else 0)


from .attach_cmds import detach as _detach_cmd, status as _status_cmd  # noqa: E402  (commands in modules
from .ctl_cmd import ctl as _ctl_cmd  # noqa: E402                                        of their own)
from .demo_cmd import demo as _demo_cmd  # noqa: E402
from .run_cmd import run as _run_cmd  # noqa: E402

for _cmd in (_run_cmd, _status_cmd, _detach_cmd, _ctl_cmd, _demo_cmd):
    cli.add_command(_cmd)


def main(argv=None) -> None:
    interrupt.install()
    try:
        cli.main(args=argv, prog_name="xdpmon", standalone_mode=True)
    except SystemExit:
        raise
    except (interrupt.Interrupted, KeyboardInterrupt):
        print("xdpmon: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # a bug: say so briefly, never dump a traceback on the operator
        print(f"xdpmon: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("this is a bug in xdpmon; set XDPMON_DEBUG=1 for the traceback", file=sys.stderr)
        if os.environ.get("XDPMON_DEBUG"):
            raise
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
