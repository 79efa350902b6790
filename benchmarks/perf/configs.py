"""What the benchmark measures: programs loaded into this kernel, each a
``Measured`` object, and the interface another configuration implements to be
plugged in.

The interface (``Measured``)
----------------------------
Any configuration is an object with

- ``fd``: the fd of an XDP program that returns XDP_PASS for every frame; the
  harness runs it with BPF_PROG_TEST_RUN (directly, or through the new-flow
  wrapper's tail call: benchmarks/perf/newflow.py), so it must be loaded as
  ``BPF_PROG_TYPE_XDP`` (BCC's ``load_func(..., BPF.XDP)``) and take every frame
  as the live build does (kernel clock, no header to strip);
- ``snapshot_apps()``: what its maps hold, in the structure of
  ``runtime.abi.snapshot.build_snapshot(...)["apps"]`` for the apps it implements
  (``{APP: {"stats": {STAT: [{"key": {...}, "value": {...}}, ...]}, ...}}``);
- ``close()``: unload it;
- optionally ``set_param(app, name, value)``: the harness sets the thresholds
  of the reference apps' rules to 2^64 - 1 through it, as it does for xdpmon's
  programs, so that no rule fires while it measures.

A configuration written elsewhere plugs in with one line in ``EXTERNAL`` below:
its name and ``"module:factory"``, a callable of no arguments returning a
``Measured`` (a class or a function). The module is imported only when the
benchmark runs; a missing module is reported as "not present" and the benchmark
runs without it. The hand-written C program of the
four reference apps (``benchmarks/handwritten``) and the dispatcher
(``benchmarks/dispatcher``) are expected there, each implementing the four
reference apps (``REFERENCE4``, syn_flood enabled): the harness checks on every
run that traffic_accounting.per_dst counted the frame R times, and that their
snapshot equals the merged program's for those four apps
(benchmarks/perf/equivalence.py).

The configurations of xdpmon's own programs are ``XdpmonProgram`` (specs
compiled as the live build, loaded with runtime.dataplane.loader.load, params
set so that no T3 rule fires, on-demand apps enabled or not) and ``Floor`` (an
empty XDP_PASS program: the cost of BPF_PROG_TEST_RUN itself).
"""

from __future__ import annotations

import ctypes
import importlib
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from benchmarks.four_apps import spec_file

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

# The paper's four reference apps (syn_flood enabled: flow_watch enables it in a real run).
REFERENCE4 = ("traffic_accounting", "syn_flood", "flow_watch", "dns_flows")

# name -> "module:factory" returning a ``Measured``: one line per plugged-in configuration.
EXTERNAL = {
    "handwritten": "benchmarks.handwritten.loader:HandwrittenApps",
    "dispatcher": "benchmarks.dispatcher.loader:DispatcherApps",
}
# The params of the reference apps' rules (set to 2^64 - 1 in plugged-in configurations).
REFERENCE4_PARAMS = (("flow_watch", "flow_threshold"), ("syn_flood", "per_dst"))

U64_MAX = (1 << 64) - 1


@runtime_checkable
class Measured(Protocol):
    """A loaded configuration the harness can run and read (see the module doc)."""

    @property
    def fd(self) -> int: ...

    def snapshot_apps(self) -> dict: ...

    def close(self) -> None: ...


def spec_paths(names) -> list[Path]:
    """The files of specs/ named (``traffic_accounting`` -> specs/traffic_accounting.mon)."""
    paths = []
    for n in names:
        p = SPECS / f"{n}.mon"
        if not p.is_file():
            known = ", ".join(sorted(q.stem for q in SPECS.glob("*.mon")))
            raise FileNotFoundError(f"no spec {p} (specs: {known})")
        paths.append(p)
    return paths


def all_spec_names() -> list[str]:
    return sorted(p.stem for p in SPECS.glob("*.mon"))


class XdpmonProgram:
    """Spec files compiled as the live build and loaded.

    Every param is set to 2^64 - 1 so that no T3 condition holds (they are all
    ``stat > param``, ``and``-ed with one): rules are evaluated on every packet
    but never fire, so the cost measured is the same on every repeat and the
    counters' growth is exact (checks.py requires every rule's ``fired`` counter
    to stay put). ``on_demand``: on-demand apps enabled until disabled, or left
    off (their enable bit clear).
    """

    def __init__(self, name: str, paths=(), *, texts: dict[str, str] | None = None, on_demand: bool = True,
                 c_edit=None):
        """``c_edit``: a function of the generated C giving the C to load instead (an
        analysis variant, benchmarks/perf/breakdown.py); the manifest stays the compiler's."""
        from compiler.driver import compile_files
        from runtime.abi.manifest import Manifest
        from runtime.control.controller import Controller
        from runtime.dataplane.loader import load
        from runtime.dataplane.maps import ProgramMaps
        from runtime.engines.live import program_clock

        self.name = name
        if texts:                                    # generated or edited specs: file name -> text
            with tempfile.TemporaryDirectory() as d:
                extra = []
                for fname, text in texts.items():
                    (Path(d) / fname).write_text(text)
                    extra.append(Path(d) / fname)
                self.art = compile_files([str(p) for p in list(paths) + extra], replay=False)
        else:
            self.art = compile_files([str(p) for p in paths], replay=False)
        self.manifest = Manifest.of(self.art.manifest)
        if self.manifest.replay:
            raise ValueError(f"{name}: the harness measures the live build, not the replay build")
        self.loaded = load(c_edit(self.art.c) if c_edit else self.art.c, stages=self.art.manifest.get("stages"))
        try:
            self.maps = ProgramMaps(self.loaded.bpf, self.manifest)
            self.maps.init()
            self.clock = program_clock(self.manifest)      # the clock the program reads
            ctl = Controller(self.manifest, self.maps, self.clock)
            for p in self.manifest.params:
                ctl.set_param(p.app, p.name, U64_MAX, by="bench")
            self.on_demand = on_demand
            for a in self.manifest.apps:
                if a.on_demand and on_demand:
                    ctl.enable(a.name, by="bench")
        except BaseException:
            self.loaded.close()
            raise
        self.apps = [a.name for a in self.manifest.apps]

    @property
    def fd(self) -> int:
        return self.loaded.fd

    @property
    def verified_insns(self) -> int:
        return self.loaded.verified_insns

    @property
    def xlated_insns(self) -> int:
        return sum(s.xlated_insns for s in self.loaded.stages or [self.loaded.info])

    def counters(self) -> dict[str, int]:
        return dict(zip(self.manifest.counter_names, self.maps.counters()))

    def snapshot_apps(self, now: int | None = None) -> dict:
        from runtime.abi.snapshot import build_snapshot
        return build_snapshot(self.manifest, self.maps.raw_state(), self.clock() if now is None else now)["apps"]

    def stat(self, app: str, stat: str) -> list | dict:
        """One statistic of one app now (only its map is read)."""
        return self.maps.app_snapshot(app, self.clock(), [stat])["stats"][stat]

    def map_entries(self, name: str) -> int:
        """How many entries hash map ``name`` holds (batch lookups)."""
        return len(self.maps._hash_items(name))

    def map_entries_walked(self, name: str) -> int:
        """The same, counted by walking the keys (BPF_MAP_GET_NEXT_KEY): a second
        opinion when a count is not what a check expects."""
        from runtime.dataplane.batch import walk_keys
        t = self.loaded.bpf[name]
        return sum(1 for _ in walk_keys(t.map_fd, ctypes.sizeof(t.Key), ctypes.sizeof(t.Leaf)))

    def close(self) -> None:
        self.loaded.close()


FLOOR_C = r"""
/* The floor: an XDP program that does nothing. What BPF_PROG_TEST_RUN costs
 * per repeat by itself; every cost is reported above it. */
#include <uapi/linux/bpf.h>
int xb_floor(struct xdp_md *ctx)
{
    return XDP_PASS;
}
"""


class Floor:
    """The empty XDP_PASS program (``Measured``, with no apps)."""

    name = "floor"
    apps: list[str] = []

    def __init__(self):
        from bcc import BPF
        self.bpf = BPF(text=FLOOR_C)
        self.fn = self.bpf.load_func("xb_floor", BPF.XDP)

    @property
    def fd(self) -> int:
        return self.fn.fd

    def snapshot_apps(self) -> dict:
        return {}

    def close(self) -> None:
        self.bpf.cleanup()


# The app alone: the specs it is compiled from, whether its on-demand apps are on.
# flow_watch's rule enables syn_flood, so it compiles only with syn_flood beside it
# (left off: one bit test per packet); syn_flood alone is enabled.
def alone_specs(app: str) -> tuple[list[str], bool]:
    if app == "flow_watch":
        return ["flow_watch", "syn_flood"], False
    return [app], True


def without_syn_flood() -> dict[str, str]:
    """The specs/ texts without syn_flood: flow_watch's ``enable syn_flood`` action
    becomes an alert (its rule never fires here: its threshold is 2^64 - 1), so
    merged-off minus this is what a disabled on-demand app costs."""
    texts = {}
    for name in all_spec_names():
        if name == "syn_flood":
            continue
        text = (SPECS / f"{name}.mon").read_text()
        if name == "flow_watch":
            edited = text.replace("enable syn_flood for 60s", 'alert "many flows"')
            if edited == text:
                raise ValueError("specs/flow_watch.mon no longer has 'enable syn_flood for 60s': "
                                 "update benchmarks/perf/configs.py without_syn_flood()")
            text = edited
        texts[f"{name}.mon"] = text
    return texts


def merge_configurations() -> dict:
    """name -> a function loading it: what bench_merge measures (before plug-ins)."""
    names = all_spec_names()
    confs = {"floor": Floor}
    for app in names:
        specs, on = alone_specs(app)
        confs[f"alone:{app}"] = (lambda a=app, s=specs, o=on: XdpmonProgram(f"alone:{a}", spec_paths(s), on_demand=o))
    confs["merged"] = lambda: XdpmonProgram("merged", spec_paths(names))
    confs["merged_on_demand_off"] = lambda: XdpmonProgram("merged_on_demand_off", spec_paths(names), on_demand=False)
    confs["merged_without_syn_flood"] = lambda: XdpmonProgram("merged_without_syn_flood", texts=without_syn_flood())
    confs["reference4"] = lambda: XdpmonProgram("reference4", [spec_file(a) for a in REFERENCE4])
    return confs


def load_external(name: str):
    """The plugged-in configuration ``name`` loaded (``EXTERNAL``), or None with the
    reason when its module is not there. A module that is there but fails, or an
    object that does not implement ``Measured``, raises: that is a bug to see."""
    spec = EXTERNAL[name]
    module, _, factory = spec.partition(":")
    if not factory:
        raise ValueError(f"EXTERNAL[{name!r}] = {spec!r}: expected 'module:factory'")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            return None, f"not present ({e.name} not found)"
        raise
    make = getattr(mod, factory, None)
    if not callable(make):
        raise TypeError(f"{module} has no {factory}() returning a configuration (benchmarks/perf/configs.py)")
    obj = make()
    missing = [m for m in ("fd", "snapshot_apps", "close") if not hasattr(obj, m)]
    if missing:
        if hasattr(obj, "close"):
            obj.close()
        raise TypeError(f"{spec}() returned {type(obj).__name__}, which lacks {', '.join(missing)} "
                        f"(the Measured interface of benchmarks/perf/configs.py)")
    if hasattr(obj, "set_param"):
        for app, param in REFERENCE4_PARAMS:
            obj.set_param(app, param, U64_MAX)
    return obj, None
