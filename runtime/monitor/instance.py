"""A running instance, from load to detach.

``Instance(art, opts)`` owns, in the order they start and the reverse order
they stop:

0. the events' output (runtime/export/events.py: a file, stdout or syslog; opened
   first, so that one that cannot be written is refused before anything loads) and
   the runtime's own events (runtime_events.py);
1. the live program (runtime/engines/live.py: loaded with BCC, maps costed
   against the memory budget first), its params set from the deployment config;
2. the Controller (runtime/control/controller.py), with the blocklist;
3. the ASL host (runtime/asl/): one worker per app, fed from the ring buffer by
   a consumer thread;
4. the attachments (runtime/dataplane/attach.py): one program, every interface;
5. the control socket (runtime/control/socket.py).

``run(out)`` reads every ``interval``: a Reading (runtime/monitor/reading.py)
handed to ``out`` (the live screen, a plain line, or JSON), a tick to the
handlers, expired blocks swept, apps whose enable time ran out told, an events
file that was moved opened again; until ``duration`` passes or a signal stops it
(runtime/monitor/signals.py). ``close()`` detaches FIRST (the kernel stops
running the program on the interfaces), then stops the socket, drains the
handlers, and unloads. It runs on every way out: normal end, --duration, a
signal, an exception. SIGKILL and the OOM killer skip it, but the program is
attached through BPF links, which the kernel removes with the process.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from runtime.engines.live import LiveEngine

from .reading import Reader, Reading
from .signals import Signals

log = logging.getLogger("xdpmon.run")
FAULT_ENV = "XDPMON_INJECT_FAULT"      # "tick": raise in the run loop (tests of the way down)


class MetricsError(RuntimeError):
    """The exporter cannot listen where asked; ``str()`` says why."""


@dataclass
class Started:
    """What the instance did on the way up (shown once by the CLI)."""
    attached: list = field(default_factory=list)      # per interface: what attach says
    notes: list[str] = field(default_factory=list)


class Instance:
    def __init__(self, art, opts, *, signals: Signals | None = None):
        self.art = art
        self.opts = opts
        self.signals = signals or Signals(reload_on_hup=bool(getattr(opts, "config_path", None)))
        self.engine: LiveEngine | None = None
        self.controller = None
        self.host = None
        self.attachment = None
        self.server = None
        self.reader: Reader | None = None
        self.started = Started()
        self.t0 = time.monotonic()
        self.last: Reading | None = None
        self.hostname = socket.gethostname()
        self.events_out = None            # runtime/export/events.py EventWriter
        self.runtime_events = None        # runtime_events.py: the instance's own events
        self.said_started = False
        self.metrics = None               # the Prometheus exporter's HTTP server (runtime/export/prometheus.py)
        self.pins = None                  # runtime/deploy/pindir.py: where the maps outlive a program
        self.no_pins: str | None = None   # why there are none
        self.lock = threading.RLock()     # a swap against the run loop's readings and ctl's reads
        from runtime.deploy.deployment import Deployment
        self.deployment = Deployment.of(getattr(opts, "specs", None) or [])    # ctl add/remove/reload change it
        self.swaps: list[dict] = []       # what each swap did (status)
        self.loads_ok: dict[str, int] = {}   # programs known to load (runtime/deploy/verify.py): instructions

    # ---- the way up ----------------------------------------------------------------------
    def start(self) -> Started:
        """Load, control, host, attach, serve; on any failure what was started is stopped."""
        from runtime.control.controller import Controller

        from runtime.control.socket import ControlServer

        from runtime.deploy.pindir import PinDir, PinError
        from runtime.deploy.verify import program_key

        opts = self.opts
        ControlServer(opts.name, None, None, None).claim()      # the name first: before anything loads
        try:
            self._events()
            try:
                self.pins = PinDir.open(opts.name)
                self.started.notes += self.pins.notes
            except PinError as e:           # runs, but cannot take apps while it runs
                self.no_pins = str(e)
                self.started.notes.append(f"maps not pinned, so ctl add/remove/reload are refused: {e}")
            self.engine = eng = LiveEngine(self.art, memory_budget=opts.memory_budget, pins=self.pins)
            self.loads_ok[program_key(self.art)] = eng.loaded.verified_insns
            self.controller = Controller(eng.manifest, eng.maps, clock=self.now,
                                         blocklist=self._blocklist(eng))
            for app, params in (opts.params or {}).items():
                for name, value in params.items():
                    self.controller.set_param(app, name, value, by="config")
            self.runtime_events.watch_controller(self.controller)      # changes from now on are events
            self.host = self._asl_host(eng)
            self.attachment = self._attach(eng)
            self.reader = Reader(eng.manifest, eng.maps, self.now, extra_counters=self._user_counters,
                                 keys_limit=self.opts.keys_limit,
                                 interfaces={a.ifindex: a.name for a in self.started.attached})
            self.server = self._serve()
            if opts.metrics:
                self.metrics = self._metrics(opts.metrics)
            self.t0 = time.monotonic()
            self.runtime_events.started(self.status(), getattr(opts, "config_path", None))
            self.said_started = True
            return self.started
        except BaseException:
            self.close()
            raise

    def _blocklist(self, eng):
        """The blocklist; never blocked: --allow and the monitored interfaces' own addresses."""
        from runtime.control.blocklist import Blocklist
        from runtime.dataplane.ifaddrs import addresses

        allow = [(a, "--allow") for a in self.opts.allow]
        for ifname in self.opts.interfaces:
            allow += [(a, f"an address of {ifname}") for a in addresses(ifname)]
        return Blocklist.for_program(eng.manifest, eng.maps, self.now, allow=allow,
                                     max_entries=self.opts.block_max, default_ttl=self.opts.block_ttl,
                                     max_ttl=self.opts.block_max_ttl, enforce=self.opts.enforce)

    def _events(self) -> None:
        """The events' writer (OutputError when its output cannot be opened) and the runtime's."""
        from runtime.export.events import EventWriter

        from .runtime_events import RuntimeEvents

        self.events_out = EventWriter.to(events_output(self.opts), host=self.hostname,
                                         interfaces=list(self.opts.interfaces), instance=self.opts.name,
                                         keep=self.opts.events_in_memory)
        self.runtime_events = RuntimeEvents(self.events_out, self.now)

    def _asl_host(self, eng):
        from runtime.asl.host import AslHost

        host = AslHost(self.art.manifest, self.art.stubs, controller=self.controller,
                       snapshot=self.app_snapshot, events=self.events_out, options=self.opts.asl or {},
                       clock=self.now, records=self.runtime_events.record)
        self.started.notes += host.notes
        host.start_live(eng.maps)
        return host

    def _attach(self, eng):
        from runtime.dataplane.attach import attach_all

        att = attach_all(eng.fd, list(self.opts.interfaces), mode=self.opts.xdp_mode, replace=self.opts.replace)
        eng.maps.set_interfaces([a.ifindex for a in att.results])    # frames per interface
        self.started.attached = list(att.results)
        self.started.notes += [a.note for a in att.results if a.note]
        return att

    def _metrics(self, where: str):
        from runtime.export.prometheus import Collector, TLSError, serve

        host, _, port = where.rpartition(":")
        collector = Collector(self.metrics_view, settings=self._export_settings, manifest=lambda: self.art.manifest)
        tls = self.opts.metrics_tls
        try:
            server, _ = serve(host.strip("[]"), int(port), collector, tls=tls)
        except TLSError as e:
            raise MetricsError(f"cannot serve metrics on {where}: TLS: {e}") from None
        except OSError as e:
            raise MetricsError(f"cannot serve metrics on {where}: {e.strerror or e} (--metrics ADDRESS:PORT: an "
                               f"address of this host, a port nothing else listens on)") from None
        how = "https" if tls else "http"
        self.started.notes.append(f"Prometheus metrics on {how}://{where}/metrics"
                                  + (" (client certificates required)" if tls and tls.get("client_ca") else ""))
        return server

    def _interfaces(self) -> dict:
        """Each interface's frames and bytes, by name."""
        names = {a.ifindex: a.name for a in self.started.attached}
        return {names.get(i, str(i)): c for i, c in self.engine.maps.interface_counters().items()}

    def _export_settings(self):
        """What the exporter exports: the config's ``metrics`` (a reload may change them)."""
        from runtime.export.scrape import ExportSettings

        return ExportSettings.of_config(self.opts.metrics_export)

    def metrics_view(self) -> tuple[dict, dict, dict]:
        """The manifest, what the exporter shows of the maps (runtime/export/scrape.py: the
        top keys of each keyed statistic, read in bounded chunks), with the counters and
        interfaces, and the status, read together (a scrape: runtime/export/prometheus.py)."""
        from runtime.export.scrape import scrape

        with self.lock:
            eng = self.engine
            snap = scrape(eng.manifest, eng.maps, eng.now(), self._export_settings())
            snap["counters"].update(self._user_counters())
            snap["interfaces"] = self._interfaces()
            return self.art.manifest, snap, self.status()

    def _serve(self):
        from runtime.control.socket import ControlServer

        srv = ControlServer(self.opts.name, self.controller, status=self.status, stats=self.stats,
                            deploy=self.deploy)
        srv.start()
        return srv

    # ---- deploying apps into the running instance (runtime/deploy/) ------------------------
    def deploy(self, cmd: str, req: dict) -> dict:
        """``ctl plan|add|remove|reload``: runtime/deploy/deployment.py."""
        from runtime.control.controller import ControlError
        from runtime.deploy.deployment import handle

        hook = getattr(self.opts, "reload", None)
        if cmd == "reload" and "specs" not in req:
            self.events_out.reopen()    # after logrotate moved the file (SIGHUP, ctl reload)
            if hook is not None:
                return hook(self)       # with a config: read it again first (runtime/cli/run_cmd.py)
        try:
            out = handle(self, cmd, req)
        except ControlError as e:
            if cmd != "plan":
                self.runtime_events.deploy_refused(cmd, str(e))
            raise
        if cmd != "plan":
            log.info("%s: %s", cmd, out["text"].splitlines()[-1])
            if out.get("swap"):
                self.runtime_events.deployed(cmd, out["swap"])
        return out

    def adopt(self, new_eng, new_art, changes, old_eng) -> None:
        """Turn everything to the program that now runs on the interfaces (called by
        runtime/deploy/swap.py once the old one runs nowhere)."""
        with self.lock:
            self.engine, self.art = new_eng, new_art
            self.controller.rebind(new_eng.manifest, new_eng.maps, self.now)
            self.runtime_events.program(new_eng.manifest)
            if self.host is not None:
                self.host = self.host.hand_over(new_art.manifest, new_art.stubs, set(changes.apps_kept),
                                                old_eng.maps)
                self.started.notes += self.host.notes
                self.host.start_live(new_eng.maps)
            self.reader.rebind(new_eng.manifest, new_eng.maps, self.now)

    # ---- the program's clock and maps, whichever program runs now (a swap replaces it) ----
    def now(self) -> int:
        return self.engine.now()

    def app_snapshot(self, app: str, stats: list[str] | None = None) -> dict:
        with self.lock:
            return self.engine.app_snapshot(app, stats)

    # ---- what it tells ---------------------------------------------------------------------
    def _user_counters(self) -> dict:
        out = {}
        if self.host is not None:
            for app, st in self.host.stats().items():
                out[f"asl.{app}.queue_dropped"] = st["dropped"]
                out[f"asl.{app}.errors"] = st["errors"]
                out[f"asl.{app}.delivered"] = st["delivered"]
        if self.controller is not None and getattr(self.controller.blocklist, "counters", None):
            out.update(self.controller.blocklist.counters())
        if self.events_out is not None:
            out.update(self.events_out.counters())
        return out

    def status(self) -> dict:
        eng = self.engine
        info = eng.loaded.info if eng else None
        return {
            "name": self.opts.name, "pid": os.getpid(), "host": self.hostname,
            "uptime_s": round(time.monotonic() - self.t0, 3),
            "interfaces": [a.to_json() for a in self.started.attached],
            "program": {"id": info.id if info else None, "stages": len(eng.loaded.stages) if eng else 0,
                        "verified_insns": eng.loaded.verified_insns if eng else 0,
                        "apps": [a.name for a in eng.manifest.apps] if eng else []},
            "enabled": self.controller.enabled() if self.controller else {},
            "params": self.controller.params() if self.controller else {},
            "blocks": len(self.controller.blocks()) if self.controller and self.controller.blocklist else 0,
            "enforce": bool(self.controller and self.controller.blocklist and self.controller.blocklist.enforce),
            "interval_s": self.opts.interval_ns / 1e9,
            "asl": self.host.stats() if self.host else {},
            "specs": list(self.deployment.specs), "removed": sorted(self.deployment.removed),
            "pins": str(self.pins.path) if self.pins else None, "swaps": self.swaps[-10:],
            "events": self.events_out.stats() if self.events_out else None,
        }

    def stats(self, app: str | None = None) -> dict:
        """The statistics now (a fresh read of the maps), with the latest interval's
        rates; of one app when named (``ctl stats``)."""
        from runtime.abi.snapshot import build_snapshot
        from runtime.control.controller import ControlError

        with self.lock:
            eng = self.engine
            snap = build_snapshot(eng.manifest, eng.maps.raw_state(), eng.now(), keys_limit=self.opts.keys_limit)
            ifaces = self._interfaces()
        snap.pop("events", None)
        rates = self.last.rates if self.last else {}
        if app is None:
            return {"now_ns": eng.now(), **snap, "interfaces": ifaces, "rates": rates,
                    "events": self.events_out.stats() if self.events_out else None}
        if app not in snap["apps"]:
            raise ControlError(f"no app '{app}' in this program (apps: {', '.join(snap['apps'])})")
        return {"app": app, "now_ns": eng.now(), **snap["apps"][app], "rates": rates.get(app, {})}

    # ---- running ----------------------------------------------------------------------------
    def run(self, out: Callable[[Reading, dict], object]) -> str:
        """Read every interval until stopped; returns why it stopped."""
        sig = self.signals
        deadline = time.monotonic() + self.opts.duration_ns / 1e9 if self.opts.duration_ns else None
        self.last = self.reader.read()
        out(self.last, self.status())
        next_at = time.monotonic() + self.opts.interval_ns / 1e9
        while sig.stop_by is None:
            wait = next_at - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait > 0:
                sig.wait(wait)
            if sig.reload:
                sig.reload = False
                self.reload()
            if deadline is not None and time.monotonic() >= deadline:
                sig.stop("--duration")
            if sig.stop_by is not None:
                break
            interval = self.opts.interval_ns / 1e9          # a reload may change it
            if time.monotonic() >= next_at:
                next_at += interval * max(1, int((time.monotonic() - next_at) // interval) + 1)
                self.tick(out)
        return sig.stop_by

    def tick(self, out) -> None:
        if os.environ.get(FAULT_ENV) == "tick":        # for the tests: an exception mid-run
            raise RuntimeError(f"fault injected by {FAULT_ENV}=tick")
        with self.lock:
            self.controller.sweep()
            self.runtime_events.poll()
            self.last = self.reader.read()
            status = self.status()
            self.host.tick()
        self.events_out.check()
        out(self.last, status)

    def apply_config(self, cfg, what: list[str]) -> None:
        """Apply a reloaded config's ``what`` (runtime/control/config.py LIVE) while running."""
        c = self.controller
        if "params" in what:
            for app, params in cfg.params.items():
                for name, value in params.items():
                    c.set_param(app, name, value, by="reload")
        bl = c.blocklist
        if bl is not None:
            if "enforce" in what and cfg.enforce is not None:
                bl.set_enforce(cfg.enforce)
            if "allow" in what:
                from runtime.control.blocklist import parse_prefix
                keep = [(n, why) for n, why in bl.allow if why != "--allow"]
                bl.allow = keep + [(parse_prefix(a), "--allow") for a in cfg.allow]
            if "block_ttl" in what and cfg.block_ttl:
                bl.default_ttl = cfg.block_ttl
            if "block_max_ttl" in what and cfg.block_max_ttl:
                bl.max_ttl = cfg.block_max_ttl
        if "interval_ns" in what and cfg.interval_ns:
            self.opts.interval_ns = cfg.interval_ns
        if "metrics_export" in what:
            self.opts.metrics_export = cfg.metrics_export          # the next scrape exports by them

    def reload(self) -> None:
        """SIGHUP with a deployment config: what ``ctl reload`` does (the hook set by the
        CLI), its outcome logged."""
        from runtime.deploy.deployment import DeployError

        if getattr(self.opts, "reload", None) is None:
            return
        try:
            out = self.deploy("reload", {})
        except DeployError as e:
            print(f"xdpmon: reload refused: {e}", file=sys.stderr, flush=True)
            return
        swapped, applied = out["text"].splitlines()[-2:]
        print(f"xdpmon: reload: {swapped}\nxdpmon: {applied}", file=sys.stderr, flush=True)

    # ---- the way down -------------------------------------------------------------------------
    def detach(self) -> list[str]:
        """Take the program off every interface (first thing on the way down); one
        ``detached`` event each. The problems met."""
        att, self.attachment = self.attachment, None
        if att is None:
            return []
        done = list(att.results)
        problems = att.close()
        if self.runtime_events is not None and self.said_started:
            prog = self.engine.loaded.info.id if self.engine and self.engine.loaded.info else None
            for a in done:
                why = next((p for p in problems if p.startswith(f"{a.name}: ")), None)
                self.runtime_events.detached(a.name, a.ifindex, prog, why)
        return problems

    def close(self, why: str | None = None, failed: bool = False) -> list[str]:
        """Detach, stop serving, drain the handlers, write ``instance_stopped`` (``why``:
        what stopped it; ``failed``: an error did), unload; each step runs even if one
        before it failed. Returns the problems met (for the CLI to print)."""
        def bound(obj, method: str):
            return getattr(obj, method) if obj is not None else None
        problems = []
        steps = (("detach", self.detach if self.attachment is not None else None),
                 ("metrics", bound(self.metrics, "shutdown")), ("control socket", bound(self.server, "stop")),
                 ("asl host", bound(self.host, "stop")),
                 ("events", (lambda: self._say_stopped(why, failed)) if self.said_started else None),
                 ("events", bound(self.events_out, "close")), ("unload", bound(self.engine, "close")),
                 ("pins", bound(self.pins, "remove")))
        for what, fn in steps:
            if fn is None:
                continue
            try:
                fn()
            except Exception as e:        # keep going: the rest must still be stopped
                problems.append(f"{what}: {type(e).__name__}: {e}")
                log.error("stopping %s: %s", what, e)
        self.attachment = self.server = self.host = self.engine = self.metrics = None
        self.events_out = self.pins = self.runtime_events = None
        self.said_started = False
        return problems

    def _say_stopped(self, why: str | None, failed: bool) -> None:
        frames = None
        if self.engine is not None:
            names = self.engine.manifest.counter_names
            frames = dict(zip(names, self.engine.maps.counters())).get("frames")
        self.runtime_events.stopped(why, round(time.monotonic() - self.t0, 3), frames, failed)


def events_output(opts):
    """Where ``opts`` (RunOptions) sends the events: runtime/export/events.py Output
    (OutputError for settings that do not go together)."""
    from runtime.abi.event_output import Output

    return Output.of(opts.events_path, opts.events_max_size, opts.events_keep, opts.events_facility,
                     opts.events_format)
