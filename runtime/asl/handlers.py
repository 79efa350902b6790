"""An app's handler: its module found and loaded, its methods called with typed
arguments, each call timed, and what it raises contained.

The module is the operator's file named by the spec's ``asl "path"`` (relative
to the current directory, then to the spec's directory), or else the generated
stub. Its ``HANDLER`` class is made with the app's context (runtime/asl/context.py),
and its methods, each optional, are called:

    packet  -> on_packet(PacketEventR<rule>A<action>(ts=..., ip_src=..., ...))
               (the module's class of that name, else the generated stub's)
    summary -> on_summary(the app's part of a snapshot, taken when the call is made)
    alert   -> on_alert(Event(ts, rule, type, message))
    enable  -> on_enable(Event(ts, rule, type, message)): message names the app it enabled
    on_start(), on_tick(), on_stop()

``records(event)``, where given (a running instance: runtime/monitor/runtime_events.py),
is told of every alert and enable record, decoded, before the handler's method.

A call that raises is counted (``errors``) and logged with its traceback; past
ERROR_BURST errors, at most one traceback per ERROR_EVERY_S seconds is logged
(saying how many were not), so a handler failing on every event cannot flood the
log. The handler then takes its next event.
"""

from __future__ import annotations

import importlib.util
import logging
import struct
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.abi.manifest import App, Manifest
from runtime.abi.records import EventDecoder, compile_reader

log = logging.getLogger("xdpmon.asl")

ERROR_BURST = 10
ERROR_EVERY_S = 10.0
_METHODS = {"packet": "on_packet", "summary": "on_summary", "alert": "on_alert", "enable": "on_enable"}
_TOLD = ("alert", "enable")             # records the runtime makes events of (``records``), before the handler
_ACTION = struct.Struct("<I").unpack_from        # a record's action, at offset 8


class AslLoadError(Exception):
    """A handler module that cannot be loaded or whose HANDLER cannot be made."""


@dataclass
class HandlerStats:
    delivered: int = 0            # events handed to the handler (raising or not)
    errors: int = 0               # calls that raised (events, ticks, start, stop)
    handler_ns: int = 0           # time spent in its methods
    ticks: int = 0


def resolve_asl(asl: str | None, spec_file: str) -> Path | None:
    if not asl:
        return None
    for base in (Path.cwd(), Path(spec_file).resolve().parent):
        p = (base / asl)
        if p.is_file():
            return p
    return None


def _where(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def load_module(name: str, path: Path | None, text: str | None, modname: str | None = None) -> types.ModuleType:
    """The handler module of app ``name``: the file ``path``, else the stub ``text``."""
    modname = modname or f"xdpmon_asl_{name}"
    what = str(path) if path is not None else "its generated stub"
    try:
        if path is not None:
            spec = importlib.util.spec_from_file_location(modname, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
        else:
            mod = types.ModuleType(modname)
            sys.modules[modname] = mod
            exec(compile(text, f"<stub {name}>", "exec"), mod.__dict__)
    except Exception as e:
        raise AslLoadError(f"the ASL handler of app '{name}' ({what}) cannot be loaded: "
                           f"{type(e).__name__}: {e}{_where(e)}") from e
    if not callable(getattr(mod, "HANDLER", None)):
        raise AslLoadError(f"the ASL handler of app '{name}' ({what}) has no HANDLER class")
    return mod


class Handler:
    """App ``app``'s handler object ``obj`` (made from ``module`` with ``ctx``), and
    how to call it. ``snapshot(app, stats)`` gives a summary's snapshot; ``stub``
    (the generated stub, loaded) the event classes ``module`` does not define."""

    def __init__(self, manifest: Manifest, app: App, module: types.ModuleType, obj, source: str, ctx,
                 snapshot: Callable[[str, list[str] | None], dict] | None = None,
                 stub: types.ModuleType | None = None, records: Callable[[dict], object] | None = None):
        self.name = app.name
        self._records = records
        self.obj = obj
        self.source = source
        self.ctx = ctx
        self.stats = HandlerStats()
        self._snapshot = snapshot
        self._method = {t: getattr(obj, m, None) for t, m in _METHODS.items()}
        self._arg = {"packet": self._packet_arg, "summary": self._summary_arg,
                     "alert": self._event_arg, "enable": self._event_arg}
        def cls_of(name):
            return getattr(module, name, None) or getattr(stub, name, None) or types.SimpleNamespace
        self._event_cls = cls_of("Event")
        # per packet action: its class and the attribute of each field (events as
        # dicts), and a function making the typed event straight from the record
        self._packet: dict[int, tuple[type, dict[str, str]]] = {}
        self._from_record: dict[int, Callable[[bytes], object]] = {}
        for ev in manifest.events.values():
            if ev.app == app.name and ev.type == "packet":
                attrs = {m["field"]: m["name"] for m in ev.record["members"] if m["role"] == "field"}
                cls = cls_of(ev.class_name)
                self._packet[ev.action] = (cls, attrs)
                self._from_record[ev.action] = _record_maker(cls, ev.record, ["ts", *attrs.values()])
        self._decode = EventDecoder(manifest)
        self._logged_at = 0.0
        self._not_logged = 0

    # ---- the arguments -----------------------------------------------------------------------
    def _packet_arg(self, ev: dict):
        cls, attrs = self._packet[ev["action"]]
        return cls(ts=ev["ts"], **{attrs[f]: v for f, v in ev["fields"].items()})

    def _summary_arg(self, ev: dict) -> dict:
        return self._snapshot(self.name, None) if self._snapshot is not None else {}

    def _event_arg(self, ev: dict):
        return self._event_cls(ts=ev["ts"], rule=ev["rule"], type=ev["type"],
                               message=ev.get("message") or ev.get("enabled") or "")

    # ---- calls -------------------------------------------------------------------------------------
    def event(self, ev: dict) -> None:
        """Hand one decoded event to the handler's method for its type."""
        st = self.stats
        st.delivered += 1
        t = ev["type"]
        if self._records is not None and t in _TOLD:
            try:
                self._records(ev)
            except Exception as e:
                log.error("asl %s: the runtime's events of a %s record: %s: %s", self.name, t, type(e).__name__, e)
        fn = self._method[t]
        if fn is None:
            return
        t0 = time.perf_counter_ns()
        try:
            fn(self._arg[t](ev))
        except Exception as e:                 # an ASL bug must not stop monitoring
            self._failed(_METHODS[t], e)
        st.handler_ns += time.perf_counter_ns() - t0

    def record(self, data: bytes) -> None:
        """Hand one ring buffer record (bytes, undecoded) to the handler: a packet
        record is made into its typed event at once, any other decoded and handed
        to ``event``."""
        make = self._from_record.get(_ACTION(data, 8)[0])
        if make is None:
            return self.event(self._decode(data))
        st = self.stats
        st.delivered += 1
        fn = self._method["packet"]
        if fn is None:
            return
        t0 = time.perf_counter_ns()
        try:
            fn(make(data))
        except Exception as e:
            self._failed("on_packet", e)
        st.handler_ns += time.perf_counter_ns() - t0

    def call(self, method: str) -> None:
        """Call ``on_start``, ``on_tick`` or ``on_stop`` when the handler has it."""
        fn = getattr(self.obj, method, None)
        if method == "on_tick":
            self.stats.ticks += 1
        if fn is None:
            return
        t0 = time.perf_counter_ns()
        try:
            fn()
        except Exception as e:
            self._failed(method, e)
        self.stats.handler_ns += time.perf_counter_ns() - t0

    def _failed(self, method: str, e: Exception) -> None:
        st = self.stats
        st.errors += 1
        now = time.monotonic()
        if st.errors > ERROR_BURST and now - self._logged_at < ERROR_EVERY_S:
            self._not_logged += 1
            return
        more = f" ({self._not_logged:,} more errors not logged)" if self._not_logged else ""
        self._logged_at, self._not_logged = now, 0
        log.error("asl %s.%s raised %s: %s%s", self.name, method, type(e).__name__, e, more,
                  exc_info=(type(e), e, e.__traceback__))


def _record_maker(cls: type, layout: dict, members: list[str]) -> Callable[[bytes], object]:
    """``cls`` made from a record: a NamedTuple (the stubs' event classes) straight
    from the tuple its fields are read into, in its own order; any other class
    with the members as keywords."""
    fields = getattr(cls, "_fields", None)
    if isinstance(cls, type) and issubclass(cls, tuple) and fields is not None and set(fields) == set(members) \
            and len(fields) == len(members):
        return compile_reader(layout, list(fields), into=cls)
    read = compile_reader(layout, members)
    return lambda data: cls(**dict(zip(members, read(data))))
