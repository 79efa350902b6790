"""The live engine: the program's live build, loaded and ready to attach.

The live build reads the kernel's clock (bpf_ktime_get_coarse_ns():
CLOCK_MONOTONIC_COARSE where every window is 100 ms or more, else
bpf_ktime_get_ns(): CLOCK_MONOTONIC; the manifest's program.clock), so windows,
expiries, rate limits and enable times follow real time; user space reads the
same clock (``now()``). Frames come from the interfaces the program is
attached to (runtime/dataplane/attach.py), not from the engine: ``run_frame``
is refused. Everything else is the engine protocol (runtime/engines/base.py):
``maps``, ``poll_events()``, ``snapshot(now=None)`` (default: now), ``events``,
``close()``.

With ``pins`` (runtime/deploy/pindir.py: a running instance's directory in bpffs) the
maps that outlive a program (compiler/pins.py) are pinned there, or opened where a
program of the same instance pinned them: the next program counts on in them.

Before loading, the maps are costed against the memory budget as for replay
(compiler/memory.py): above it, dsl.errors.SpecError and nothing is loaded.
"""

from __future__ import annotations

import time

from compiler import memory
from dsl.errors import SpecError
from runtime.abi.manifest import Manifest
from runtime.abi.snapshot import build_snapshot
from runtime.dataplane.loader import Loaded, load
from runtime.dataplane.maps import ProgramMaps

from .base import QUEUE_SIZE, Engine


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC: bpf_ktime_get_ns()."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


CLOCK_MONOTONIC_COARSE = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)   # <linux/time.h>; Python names it not


def monotonic_coarse_ns() -> int:
    """CLOCK_MONOTONIC_COARSE: bpf_ktime_get_coarse_ns()."""
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


def program_clock(manifest):
    """The clock function reading what the live program reads (its manifest's program.clock)."""
    return monotonic_coarse_ns if Manifest.of(manifest).clock == "monotonic_coarse" else monotonic_ns


class LiveEngine(Engine):
    """A compiled program (``art``: the live build) loaded into the kernel."""

    name = "live"

    def __init__(self, art, *, queue_size: int = QUEUE_SIZE, memory_budget: int | None = None,
                 pins=None, loaded: Loaded | None = None):
        manifest = Manifest.of(art.manifest)
        if manifest.replay:
            raise ValueError("a live program is the live build (compile with replay=False)")
        self.art = art
        self.memory = memory.estimate(art.plan)
        over = memory.check(self.memory, memory.Budget.of(memory_budget))
        if over:
            raise SpecError(over, art.sources)
        self._clock = program_clock(manifest)
        # ``loaded``: loaded already, by a process of its own (runtime/dataplane/handed.py)
        self.loaded: Loaded = loaded if loaded is not None else load(
            art.c, stages=art.manifest.get("stages"), pin_dir=str(pins.path) if pins is not None else None)
        try:
            if pins is not None:
                pins.check(self.loaded.bpf, art.manifest["pins"])
            super().__init__(manifest, ProgramMaps(self.loaded.bpf, manifest), queue_size=queue_size)
        except BaseException:
            self.loaded.close()
            raise

    @property
    def fd(self) -> int:
        """The entry point's program fd: what is attached."""
        return self.loaded.fd

    def now(self) -> int:
        """The program's clock, now."""
        return self._clock()

    def _run(self, ts_ns: int, data: bytes, wire_len: int) -> int | None:
        raise TypeError("a live program takes its frames from the interfaces it is attached to")

    def snapshot(self, now: int | None = None) -> dict:
        self.maps.poll_events()
        return build_snapshot(self.manifest, self.maps.raw_state(), self.now() if now is None else now,
                              self.events.waiting())

    def app_snapshot(self, app: str, stats: list[str] | None = None) -> dict:
        return self.maps.app_snapshot(app, self.now(), stats)

    def close(self) -> None:
        self.loaded.close()
