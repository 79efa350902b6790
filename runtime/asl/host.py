"""Hosts the apps' application-specific logic (ASL): Python handler classes.

For each app with rules, the host loads its handler module -- the operator's
file named by the spec's ``asl "path"`` (relative to the current directory,
then to the spec's directory), or else the generated stub -- instantiates its
``HANDLER`` class with a context, and dispatches decoded events:

    packet  -> on_packet(PacketEventR<rule>A<action>(ts=..., ip_src=..., ...))
    alert   -> on_alert(Event)
    summary -> on_summary(snapshot of the app's statistics)
    enable  -> on_enable(Event)

``deliver(events, snapshot)`` takes events as an engine produces them (a
summary's handler gets the app's part of ``snapshot()``, taken then).
A handler that raises is logged and counted, never allowed to stop the runtime.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runtime.abi.manifest import Manifest

log = logging.getLogger("xdpmon.asl")


@dataclass
class AslContext:
    """What a handler can use: the app's name, its params, and an event sink."""
    app: str
    params: dict
    emitted: list = field(default_factory=list)

    def emit(self, kind: str, **fields) -> None:
        """Record an application event (printed as JSON lines by the runtime)."""
        self.emitted.append({"app": self.app, "event": kind, **fields})


@dataclass
class HostedApp:
    name: str
    source: str                  # path of the handler module, or "generated stub"
    handler: object
    module: types.ModuleType
    ctx: AslContext
    calls: int = 0
    errors: int = 0


def _load_module(name: str, path: Path | None, text: str | None) -> types.ModuleType:
    modname = f"xdpmon_asl_{name}"
    if path is not None:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        return mod
    mod = types.ModuleType(modname)
    sys.modules[modname] = mod
    exec(compile(text, f"<stub {name}>", "exec"), mod.__dict__)
    return mod


def resolve_asl(asl: str | None, spec_file: str) -> Path | None:
    if not asl:
        return None
    for base in (Path.cwd(), Path(spec_file).resolve().parent):
        p = (base / asl)
        if p.is_file():
            return p
    return None


class AslHost:
    def __init__(self, manifest: Manifest | dict, stubs: dict[str, str]):
        self.manifest = Manifest.of(manifest)
        self.apps: dict[str, HostedApp] = {}
        self.notes: list[str] = []
        for app in self.manifest.apps:
            if not app.rules:
                continue
            path = resolve_asl(app.asl, app.file)
            if app.asl and path is None:
                self.notes.append(f"{app.name}: asl file '{app.asl}' not found; using the generated stub")
            mod = _load_module(app.name, path, None if path else stubs[f"{app.name}.py"])
            ctx = AslContext(app.name, {p.name: p.default for p in app.params})
            handler = mod.HANDLER(ctx)
            self.apps[app.name] = HostedApp(app.name, str(path) if path else "generated stub", handler, mod, ctx)

    def _call(self, h: HostedApp, method: str, arg) -> None:
        fn = getattr(h.handler, method, None)
        if fn is None:
            return
        h.calls += 1
        try:
            fn(arg) if arg is not None else fn()
        except Exception as e:       # an ASL bug must not stop monitoring
            h.errors += 1
            log.error("asl %s.%s raised %s: %s", h.name, method, type(e).__name__, e)

    def dispatch(self, event: dict, app_snapshot: dict | None = None) -> None:
        h = self.apps.get(event["app"])
        if h is None:
            return
        t = event["type"]
        if t == "packet":
            ev = self.manifest.events.get(event["action"])
            cls = getattr(h.module, ev.class_name, None) if ev and ev.class_name else None
            attrs = {k.replace(".", "_"): v for k, v in event["fields"].items()}
            arg = cls(ts=event["ts"], **attrs) if cls else types.SimpleNamespace(ts=event["ts"], **attrs)
            self._call(h, "on_packet", arg)
        elif t == "summary":
            self._call(h, "on_summary", app_snapshot or {})
        else:
            ev_cls = getattr(h.module, "Event", None)
            fields = {"ts": event["ts"], "rule": event["rule"], "type": t, "message": event.get("message", "")}
            arg = ev_cls(**fields) if ev_cls else types.SimpleNamespace(**fields)
            self._call(h, "on_alert" if t == "alert" else "on_enable", arg)

    def deliver(self, events: list[dict], snapshot: Callable[[], dict] | None = None) -> None:
        """Dispatch events in their order; ``snapshot()`` (taken at most once, and
        only for a summary) gives the apps' statistics a summary hands on."""
        snap = None
        for ev in events:
            app_snapshot = None
            if ev["type"] == "summary" and snapshot is not None:
                if snap is None:
                    snap = snapshot()
                app_snapshot = snap["apps"].get(ev["app"])
            self.dispatch(ev, app_snapshot)

    def tick(self) -> None:
        for h in self.apps.values():
            self._call(h, "on_tick", None)

    def summary(self) -> dict:
        return {name: {"source": h.source, "calls": h.calls, "errors": h.errors, "emitted": list(h.ctx.emitted)}
                for name, h in self.apps.items()}
