"""``xdpmon run``: compile the live build of the specs, attach it to interfaces,
show what it sees every interval, and always detach (runtime/monitor/)."""

from __future__ import annotations

import json
import os
import sys

import click

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _duration(ctx, param, value):
    if value is None:
        return None
    from runtime.control.values import parse_duration

    try:
        return parse_duration(value, param.opts[0])
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def fail(paragraph: str, status: int = EXIT_USAGE):
    click.echo(f"xdpmon run: {paragraph}", err=True)
    sys.exit(status)


def _need_root() -> None:
    if os.geteuid() != 0:
        fail("monitoring an interface loads and attaches an XDP program, which needs root (CAP_BPF, "
             "CAP_NET_ADMIN and CAP_PERFMON). Run it as root, e.g. sudo xdpmon run ...; to try specs "
             "without root, replay a capture: xdpmon replay SPECS --pcap FILE --engine reference")


def _output(opts, manifest):
    """The function that shows each reading, and the context it needs (the live screen)."""
    from runtime.ui.live_view import LiveScreen, plain_line

    view = opts.view
    if opts.json:
        def out(reading, status):
            click.echo(json.dumps({"type": "snapshot", "instance": status.get("name"), **reading.to_json()},
                                  default=str))
        return out, None
    if view == "auto":
        view = "rich" if sys.stdout.isatty() else "plain"
    if view == "none":
        return (lambda reading, status: None), None
    if view == "plain":
        return (lambda reading, status: click.echo(plain_line(reading, status))), None
    screen = LiveScreen(manifest, top=opts.top)
    return screen.update, screen


def start_or_exit(inst):
    """Start the instance; every way it can fail is a short paragraph and exit 2."""
    from dsl.errors import SpecError
    from runtime.control.controller import ControlError
    from runtime.control.socket import InstanceRunning
    from runtime.dataplane.attach import AttachError
    from runtime.dataplane.libbpf import LibbpfMissing
    from runtime.dataplane.loader import LoadError
    from runtime.export.events import OutputError
    from runtime.monitor.instance import MetricsError

    from . import load_failures
    from .main import report_spec_error

    try:
        return inst.start()
    except SpecError as e:                    # the maps need more memory than the budget
        report_spec_error(e)
    except LoadError as e:
        load_failures.report(e, inst.art.manifest, "xdpmon run: cannot load the program")
    except (AttachError, InstanceRunning, MetricsError, OutputError) as e:
        click.echo(f"xdpmon run: {e}", err=True)
    except LibbpfMissing as e:
        click.echo(f"xdpmon run: {e}; run 'make setup'", err=True)
    except PermissionError as e:
        click.echo(f"xdpmon run: not permitted: {e} (run as root)", err=True)
    except ControlError as e:                 # e.g. an --allow prefix that is not one
        click.echo(f"xdpmon run: {e}", err=True)
    sys.exit(EXIT_USAGE)


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-i", "--interface", "interfaces", multiple=True, metavar="IFACE",
              help="An interface to monitor; repeat for several (one program and one set of maps for all).")
@click.option("--xdp-mode", type=click.Choice(["auto", "native", "generic"]), default=None,
              help="native (in the driver), generic (any interface, slower), auto (native, else generic) [auto].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A deployment config (YAML).")
@click.option("--interval", callback=_duration, help="How often the maps are read and shown [1s].")
@click.option("--duration", callback=_duration, help="Stop (and detach) after this long, e.g. 30s, 2h.")
@click.option("--json", "as_json", is_flag=True, default=None, help="One JSON snapshot per interval on stdout.")
@click.option("--events", "events_path", metavar="FILE|-|syslog[:SOCKET]",
              help="Events (JSON lines): appended to FILE, - for stdout [stdout], or syslog (/dev/log, or SOCKET).")
@click.option("--events-max-size", "events_max_size", metavar="SIZE",
              help="Rotate the events file before it passes SIZE (e.g. 100Mi): FILE.1, FILE.2, ... [never].")
@click.option("--events-keep", "events_keep", type=click.IntRange(min=1), metavar="N",
              help="Rotated events files kept (with --events-max-size) [5].")
@click.option("--events-facility", "events_facility", metavar="NAME",
              help="The syslog facility of the events (daemon, user, local0 ... local7) [daemon].")
@click.option("--events-format", "events_format", type=click.Choice(["rfc3164", "rfc5424"]), default=None,
              help="The syslog framing: rfc3164 (as syslog(3) sends it) or rfc5424 [rfc3164].")
@click.option("--enforce", is_flag=True, default=None, help="Drop blocked sources' frames (default: count them only).")
@click.option("--allow", multiple=True, metavar="PREFIX", help="A prefix never blocked (repeat).")
@click.option("--replace", is_flag=True, default=None, help="Replace an XDP program already on an interface, atomically.")
@click.option("--name", help="The instance's name (its control socket /run/xdpmon/NAME.sock) [default].")
@click.option("--view", type=click.Choice(["auto", "rich", "plain", "none"]), default=None,
              help="rich: a live screen; plain: one line per interval; auto: rich on a terminal [auto].")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Keys shown per statistic [5].")
@click.option("--keys", "keys_limit", default=None, metavar="N|all",
              help="Keys listed per keyed statistic each interval: its N largest [1000], or all.")
@click.option("--memory-budget", "memory_budget", default=None, help="Kernel memory the maps may take (e.g. 2Gi).")
@click.option("--metrics", default=None, metavar="ADDR:PORT",
              help="Serve Prometheus metrics on http://ADDR:PORT/metrics (e.g. 127.0.0.1:9400).")
def run(files, interfaces, xdp_mode, config_path, interval, duration, as_json, events_path, events_max_size,
        events_keep, events_facility, events_format, enforce, allow, replace, name, view, top, keys_limit,
        memory_budget, metrics):
    """Monitor interfaces with the apps of spec FILES: attach one merged XDP program to every
    -i IFACE, show its statistics every interval, host the apps' ASL, take commands
    (xdpmon ctl), and detach on exit, however it ends."""

    cli = {"specs": list(files), "interfaces": list(interfaces), "xdp_mode": xdp_mode, "interval_ns": interval,
           "duration_ns": duration, "json": as_json, "events_path": events_path, "enforce": enforce,
           "allow": list(allow), "replace": replace, "name": name, "view": view, "top": top,
           "memory_budget": _size(memory_budget), "keys_limit": _keys(keys_limit), "metrics": _addr(metrics),
           "events_max_size": _size(events_max_size, "--events-max-size"), "events_keep": events_keep,
           "events_facility": events_facility, "events_format": events_format}
    opts = _options(config_path, cli)
    _check_events(opts)
    from runtime.control.socket import check_name
    try:
        check_name(opts.name)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--name") from None
    if not opts.specs:
        raise click.UsageError("name the spec files (xdpmon run SPECS... -i IFACE) or give them in --config")
    if not opts.interfaces:
        raise click.UsageError("name an interface to monitor: -i IFACE (repeat for several)")
    _need_root()
    sys.exit(run_instance(opts))


def _addr(text):
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"'{text}' is not ADDRESS:PORT (e.g. 127.0.0.1:9400)", param_hint="--metrics")
    return text


def _keys(text):
    if text is None:
        return None
    if text == "all":
        return 0                      # RunOptions: 0 is "every key"
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"'{text}' is not a number of keys or 'all'", param_hint="--keys")
    return int(text)


def _size(text, option: str = "--memory-budget"):
    if text is None:
        return None
    from compiler.memory import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def _check_events(opts) -> None:
    """The events' output, as the command line and the config give it together."""
    from runtime.abi.event_output import OutputError
    from runtime.monitor.instance import events_output

    try:
        events_output(opts)
    except OutputError as e:
        raise click.UsageError(str(e)) from None


def _options(config_path, cli: dict):
    """The config's options with the command line's over them; a bad config is
    reported like a spec error (file:line:col, caret) and exit 2."""
    from runtime.control.config import load_config, merge

    from .main import report_spec_error

    cfg = None
    if config_path:
        from dsl.errors import SpecError
        try:
            cfg = load_config(config_path)
        except SpecError as e:
            report_spec_error(e)
            sys.exit(EXIT_USAGE)
    opts = merge(cfg, cli)
    opts.config = cfg
    if opts.keys_limit == 0:
        opts.keys_limit = None
    if cfg is not None:
        opts.reload = _reloader(config_path)
    return opts


def _reloader(config_path: str):
    """``ctl reload``, and SIGHUP, with a config: read it again, deploy its specs (every
    spec file read again: runtime/deploy/), and apply what else can change while
    running. Returns the answer ``ctl`` prints; DeployError when refused (nothing
    changed, or only the specs when the config's other settings are wrong)."""
    def reload(inst) -> dict:
        from dsl.errors import SpecError, render_plain
        from runtime.control.config import check_against, live_changes, load_config
        from runtime.deploy.deployment import DeployError

        def rendered(e: SpecError) -> str:
            return "\n".join(render_plain(d, e.sources) for d in e.diagnostics)
        try:
            new = load_config(config_path)
        except SpecError as e:
            raise DeployError(f"the config has errors; nothing changed\n{rendered(e)}") from None
        out = inst.deploy("reload", {"specs": new.specs or list(inst.deployment.specs)})
        try:
            bad = check_against(new, inst.art.manifest)
            if bad:
                raise SpecError(bad, {config_path: open(config_path).read()})
        except SpecError as e:
            raise DeployError(f"{out['text']}\nthe config's other settings have errors; they were not "
                              f"applied\n{rendered(e)}") from None
        live, restart = live_changes(inst.opts.config, new)
        live = [k for k in live if k != "specs"]
        inst.apply_config(new, live)
        inst.opts.config = new
        text = (f"{out['text']}\nreloaded {config_path}: applied {', '.join(live) or 'nothing new'}"
                + (f"; needs a restart to change: {', '.join(restart)}" if restart else ""))
        return {**out, "text": text}
    return reload


def run_instance(opts) -> int:
    """Compile, start, run, stop; the exit status."""
    import logging

    from runtime.monitor.instance import Instance

    from .main import compile_or_exit, load_or_exit

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    program, sources = load_or_exit(opts.specs)
    art = compile_or_exit(program, sources)
    if getattr(opts, "config", None) is not None:
        from dsl.errors import SpecError
        from runtime.control.config import check_against

        bad = check_against(opts.config, art.manifest)
        if bad:
            from .main import report_spec_error
            report_spec_error(SpecError(bad, {opts.config.path: open(opts.config.path).read()}))
            sys.exit(EXIT_USAGE)
    from . import load_failures
    load_failures.survive_fatal_exits(art.manifest, "xdpmon run: cannot load the program")
    inst = Instance(art, opts)
    inst.signals.install()
    why, status = None, EXIT_OK
    try:
        started = start_or_exit(inst)
        for a in started.attached:
            click.echo(f"xdpmon: attached to {a.name} ({a.mode}, by {a.how}"
                       + (f" {a.link_id}" if a.link_id else "") + f"), program id {a.prog_id}", err=True)
        for note in started.notes:
            click.echo(f"note: {note}", err=True)
        out, screen = _output(opts, art.manifest)
        if screen is not None:
            with screen:
                why = inst.run(out)
        else:
            why = inst.run(out)
    except BaseException as e:
        from .interrupt import Interrupted
        if isinstance(e, (Interrupted, KeyboardInterrupt)):
            why, status = "SIGINT", EXIT_INTERRUPTED
        elif isinstance(e, SystemExit):
            raise
        else:
            why, status = f"{type(e).__name__}: {e}", 70
            click.echo(f"xdpmon run: internal error: {type(e).__name__}: {e} (detaching; this is a bug in "
                       f"xdpmon, set XDPMON_DEBUG=1 for the traceback)", err=True)
            if os.environ.get("XDPMON_DEBUG"):
                import traceback
                traceback.print_exc()
    finally:
        status = _stop(inst, why, status, opts)
    return status


def _stop(inst, why, status, opts) -> int:
    """Detach first, then the last reading, then the rest."""
    try:
        inst.detach()
    except Exception as e:
        click.echo(f"xdpmon run: detaching failed: {e}", err=True)
        status = EXIT_RUNTIME
    final = None
    if inst.reader is not None:
        try:
            final = inst.reader.read()
        except Exception as e:
            click.echo(f"xdpmon run: the last reading failed: {e}", err=True)
    problems = inst.close(why, failed=status == 70)
    inst.signals.restore()
    for p in problems:
        click.echo(f"xdpmon run: while stopping: {p}", err=True)
    if why is not None:
        if final is not None and opts.json:
            click.echo(json.dumps({"type": "final", "stopped_by": why, **final.to_json()}, default=str))
        frames = final.snapshot["counters"].get("frames", 0) if final else 0
        click.echo(f"xdpmon: stopped ({why}); detached; {frames:,} frames seen", err=True)
        if why == "SIGINT" and status == EXIT_OK:
            status = EXIT_INTERRUPTED
    return EXIT_RUNTIME if problems and status == EXIT_OK else status
