"""The ``xdpmon`` command line.

Exit status: 0 all well; 2 errors in the specs (or the command line); 1 a
runtime problem (e.g. the kernel refused something); 70 an internal error.
Spec errors are printed as ``path:line:col: error: ...`` with the source line
and a caret, in colour on a terminal. No Python traceback reaches the user.
"""

from __future__ import annotations

import os
import sys

import click

from dsl.errors import SpecError, render

EXIT_SPEC = 2
EXIT_INTERNAL = 70


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
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--notes", is_flag=True, help="Also print notes (accepted, but worth knowing).")
def check(files, notes):
    """Parse and check spec FILES; print one line per app."""
    program, sources = load_or_exit(files)
    for app in program.apps:
        click.echo(app_summary(app))
    if program.notes:
        if notes:
            render(list(program.notes), sources, color=_color(sys.stderr))
        else:
            click.echo(f"({_plural(len(program.notes), 'note')}; --notes shows them)", err=True)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="xdpmon", standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a bug: say so briefly, never dump a traceback on the operator
        print(f"xdpmon: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("this is a bug in xdpmon; set XDPMON_DEBUG=1 for the traceback", file=sys.stderr)
        if os.environ.get("XDPMON_DEBUG"):
            raise
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
