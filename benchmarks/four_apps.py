"""The paper's four reference apps, and the configurations that run them, for the
benchmark against hand-written and multi-program deployments
(benchmarks/bench_handwritten.py, tests/test_handwritten.py, tests/test_dispatcher.py).

Every configuration has the same interface (the Protocol of benchmarks/perf/ is the
same three members): ``.fd`` (the XDP program to run under BPF_PROG_TEST_RUN),
``.snapshot_apps(now=None)`` (the structure ``build_snapshot(...)["apps"]`` has for these
four apps, on the kernel's clock ``now``, default: the time of the call) and
``.close()``. Here:

- ``GeneratedApps``: xdpmon's merged program of the four specs, live build;
- ``FloorProgram``: an empty XDP_PASS program (what a test run costs by itself).

The hand-written program is ``benchmarks/handwritten/``, the multi-program deployment
``benchmarks/dispatcher/``.
"""

from __future__ import annotations

import copy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("traffic_accounting", "syn_flood", "flow_watch", "dns_flows")
# flow_watch as the paper has it (distinct flows only): benchmarks/specs/flow_watch.mon
PAPER_SPECS = {"flow_watch": ROOT / "benchmarks" / "specs" / "flow_watch.mon"}


def spec_file(app: str) -> Path:
    """The spec of one of the four reference apps as the benchmarks measure it."""
    return PAPER_SPECS.get(app, ROOT / "specs" / f"{app}.mon")


SPECS = tuple(str(spec_file(a)) for a in APPS)
U64_MAX = (1 << 64) - 1

# The statistics' values that are times (pkt.ts): they are the clock of the run that
# made them, so two programs fed the same frames one after the other differ there.
TIME_VALUES = {("dns_flows", "flows"): ("first", "last")}


def kernel_clock_ns() -> int:
    """The kernel's clock as these programs read it: bpf_ktime_get_coarse_ns(),
    CLOCK_MONOTONIC_COARSE (xdpmon's live build where every window is >= 100 ms, and the
    hand-written program likewise)."""
    from runtime.engines.live import monotonic_coarse_ns as now
    return now()


def without_times(apps: dict) -> dict:
    """A copy of a snapshot's apps with every time value (TIME_VALUES) replaced by
    whether it is set, for comparing programs that ran the same frames at other times."""
    out = copy.deepcopy(apps)
    for (app, stat), names in TIME_VALUES.items():
        for entry in out.get(app, {}).get("stats", {}).get(stat, []):
            for n in names:
                entry["value"][n] = entry["value"][n] is not None
    return out


class GeneratedApps:
    """xdpmon's merged program of the four apps (compiler.driver.compile_files, live build),
    loaded with runtime.dataplane.loader.load; ``maps`` is its ProgramMaps. The specs'
    defaults apply; ``syn_enabled`` switches syn_flood on for good (as an operator would)."""

    name = "generated"

    def __init__(self, syn_enabled: bool = True, specs=SPECS):
        from compiler.driver import compile_files
        from runtime.dataplane.loader import load
        from runtime.dataplane.maps import ProgramMaps

        self.art = compile_files(list(specs))
        self.manifest = self.art.manifest
        self.loaded = load(self.art.c, stages=self.manifest.get("stages"))
        try:
            self.maps = ProgramMaps(self.loaded.bpf, self.manifest)
            self.maps.init()
            if syn_enabled:
                self.maps.set_enabled("syn_flood", U64_MAX)
        except BaseException:
            self.loaded.close()
            raise
        self._events: list[dict] = []
        self.maps.open_events(self._events.append)

    @property
    def fd(self) -> int:
        return self.loaded.fd

    def set_param(self, app: str, name: str, value: int) -> None:
        self.maps.set_param(app, name, value)

    def set_enabled(self, app: str, until_ns: int) -> None:
        self.maps.set_enabled(app, until_ns)

    def snapshot(self, now: int | None = None) -> dict:
        from runtime.abi.snapshot import build_snapshot
        now = kernel_clock_ns() if now is None else now
        return build_snapshot(self.manifest, self.maps.raw_state(), now)

    def snapshot_apps(self, now: int | None = None) -> dict:
        return self.snapshot(now)["apps"]

    def counters(self) -> dict[str, int]:
        return dict(zip(self.manifest["counters"]["names"], self.maps.counters()))

    def events(self) -> list[dict]:
        """The events the program sent since the last call, decoded, in order."""
        self.maps.poll_events()
        out, self._events[:] = list(self._events), []
        return out

    def close(self) -> None:
        self.loaded.close()


FLOOR_C = """
/* The floor: what BPF_PROG_TEST_RUN costs with a program that does nothing. */
int xdpmon_main(struct xdp_md *ctx)
{
    return XDP_PASS;
}
"""


class FloorProgram:
    """An empty XDP_PASS program (no apps: ``snapshot_apps()`` is empty)."""

    name = "floor"

    def __init__(self):
        from runtime.dataplane.loader import load
        self.loaded = load(FLOOR_C)

    @property
    def fd(self) -> int:
        return self.loaded.fd

    def snapshot_apps(self, now: int | None = None) -> dict:
        return {}

    def close(self) -> None:
        self.loaded.close()
