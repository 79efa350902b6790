"""Load the multi-program deployment of the four apps: the entry program (entry.c) and
xdpmon's own program of each app, compiled alone (live build), chained by tail calls.

``DispatcherApps()`` loads, in order, the entry program (owner of the program array and
the shared counters) and the app programs traffic_accounting, syn_flood, flow_watch,
dns_flows at chain indices 0..3 (each wrapped by wrap.chain_link to tail-call the next);
syn_flood's control block is shared with flow_watch's program, whose rule enables it
(flow_watch is compiled with syn_flood_stub.mon, which gives the enable a target). It
gives ``.fd`` (the entry program), ``.snapshot_apps(now=None)`` (each app's part of
``build_snapshot`` from its own program's maps and manifest: the structure the merged
program's snapshot has), ``.events()``, ``.counters()``, ``set_param``,
``set_enabled`` and ``.close()``.

The tables shared between programs are BCC public/extern tables (BCC passes their fds
from one module to the next in this process): nothing is pinned, nothing is left behind
when the process ends. Their names are unique per dispatcher.
"""

from __future__ import annotations

import copy
import ctypes
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.four_apps import APPS, U64_MAX, kernel_clock_ns, spec_file

from .wrap import chain_link, share_control

HERE = Path(__file__).resolve().parent
ENTRY_C = HERE / "entry.c"
SYN_FLOOD_STUB = HERE / "syn_flood_stub.mon"
SHARED_COUNTERS = ("frames", "bytes", "ipv4", "ipv6", "other", "entry_tail_call_failed", "app_tail_call_failed")
_ids = itertools.count()


@dataclass
class Link:
    """One app's program in the chain."""
    app: str
    index: int
    manifest: dict
    loaded: object                 # runtime.dataplane.loader.Loaded
    maps: object                   # runtime.dataplane.maps.ProgramMaps
    events: list = field(default_factory=list)


class DispatcherApps:
    """The entry program and the four app programs, chained; syn_flood on for good unless
    ``syn_enabled`` is false."""

    name = "dispatcher"

    def __init__(self, syn_enabled: bool = True):
        from runtime.dataplane.loader import load

        tag = f"{os.getpid()}_{next(_ids)}"
        self.chain, self.shared, self.ctl = f"xd_chain_{tag}", f"xd_shared_{tag}", f"xd_ctl_{tag}"
        self.entry = None
        self.links: list[Link] = []
        try:
            self.entry = load(ENTRY_C.read_text().replace("@CHAIN@", self.chain).replace("@SHARED@", self.shared))
            for i, app in enumerate(APPS):
                self.links.append(self._load_app(app, i, load))
            table = self.entry.bpf[self.chain]
            for link in self.links:
                table[ctypes.c_int(link.index)] = ctypes.c_int(link.loaded.fd)
            if syn_enabled:
                self.set_enabled("syn_flood", U64_MAX)
        except BaseException:
            self.close()
            raise

    def _load_app(self, app: str, index: int, load) -> Link:
        from compiler.driver import compile_files
        from runtime.dataplane.maps import ProgramMaps

        specs = [str(spec_file(app))] + ([str(SYN_FLOOD_STUB)] if app == "flow_watch" else [])
        art = compile_files(specs)
        if art.manifest["stages"].get("map"):
            raise ValueError(f"{app} compiles to {len(art.manifest['stages']['functions'])} stages: "
                             "a link of the chain must be one program")
        nxt = index + 1 if index + 1 < len(APPS) else None
        c = chain_link(art.c, self.chain, self.shared, nxt)
        man = copy.deepcopy(art.manifest)
        if app in ("syn_flood", "flow_watch"):       # flow_watch's rule enables syn_flood: one control block
            bit = next(a["enable_bit"] for a in man["apps"] if a["name"] == "syn_flood")
            if bit != 0 or man["control"]["n_bits"] != 1:
                raise ValueError(f"{app}'s program has syn_flood at enable bit {bit} of "
                                 f"{man['control']['n_bits']}: the shared control block needs bit 0 of 1")
            c = share_control(c, man["control"]["map"], self.ctl, owner=app == "syn_flood")
            man["control"]["map"] = self.ctl
        loaded = load(c)
        try:
            maps = ProgramMaps(loaded.bpf, man)
            maps.init()
            link = Link(app, index, man, loaded, maps)
            maps.open_events(link.events.append)
        except BaseException:
            loaded.close()
            raise
        return link

    @property
    def fd(self) -> int:
        return self.entry.fd

    def _link(self, app: str) -> Link:
        for link in self.links:
            if link.app == app:
                return link
        raise KeyError(f"no app {app!r}: the dispatcher runs {', '.join(APPS)}")

    def set_param(self, app: str, name: str, value: int) -> None:
        self._link(app).maps.set_param(app, name, value)

    def set_enabled(self, app: str, until_ns: int) -> None:
        self._link(app).maps.set_enabled(app, until_ns)

    def snapshot_apps(self, now: int | None = None) -> dict:
        from runtime.abi.snapshot import build_snapshot
        now = kernel_clock_ns() if now is None else now
        return {link.app: build_snapshot(link.manifest, link.maps.raw_state(), now)["apps"][link.app]
                for link in self.links}

    def counters(self) -> dict[str, int]:
        """The entry program's shared counters (``entry.NAME``) and every app program's own
        (``APP.NAME``, its manifest's names)."""
        t = self.entry.bpf[self.shared]
        out = {f"entry.{n}": sum(int(v) for v in t.getvalue(t.Key(i))) for i, n in enumerate(SHARED_COUNTERS)}
        for link in self.links:
            out.update({f"{link.app}.{n}": v for n, v in
                        zip(link.manifest["counters"]["names"], link.maps.counters())})
        return out

    def events(self) -> list[dict]:
        """The events of every app program since the last call, in the order they happened
        (each program's ring buffer is in order; across programs, by time)."""
        out = []
        for link in self.links:
            link.maps.poll_events()
            out.extend(link.events)
            link.events.clear()
        return sorted(out, key=lambda e: e["ts"])

    def close(self) -> None:
        """The app programs (last first), then the entry program that owns the shared tables."""
        for link in reversed(self.links):
            link.loaded.close()
        self.links = []
        if self.entry is not None:
            self.entry.close()
            self.entry = None
