"""The kernel replay engine: the loaded program runs on every frame with
BPF_PROG_TEST_RUN, on the capture's clock.

The program is the replay build (compiler ``replay=True``): each frame is
handed to the kernel preceded by the replay header (compiler/abi.py: its capture
time and its length on the wire), which the program reads and strips, so pkt.ts,
windows, expiries, rate limits and enables follow capture time and pkt.len is
the frame's original length even when the capture kept only its start. The
kernel refuses XDP test runs of frames shorter than an Ethernet header (14
bytes) and of frames longer than it can hold (about 73 kB); such frames are
counted by reason (``replay.refused.short``, ``replay.refused.oversize``) and
never reach the program (no NIC delivers them either).

Before loading, the program's maps are costed (compiler/memory.py): above the
memory budget (``memory_budget`` bytes; default a quarter of physical memory)
the engine raises dsl.errors.SpecError at the statistic that needs the most,
and nothing is loaded. ``pin_dir``: the maps that outlive a program are pinned
there (compiler/pins.py; the tests of runtime/deploy/ replay two programs that share
them).

``on_one_cpu()``: the calling thread kept on the CPU it runs on for a block. A test run
runs on the caller's CPU, so a statistic kept per CPU (compiler/percpu.py) gets a copy per
CPU the replay ran on, and reading combines windowed copies by their latest window, which
is the shared map's value only while the clock never goes back: replaying captures whose
clocks do (one after another, out of order) must stay on one CPU to read what a shared map
would hold. ``xdpmon replay`` and the differential tests do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

from compiler.abi import REPLAY_HEADER_PACK as _HDR
from compiler import memory
from dsl.errors import SpecError
from runtime.abi.manifest import Manifest
from runtime.dataplane.bpf_test_run import ETH_HLEN, TestRunner
from runtime.dataplane.loader import Loaded, load
from runtime.dataplane.maps import ProgramMaps

from .base import QUEUE_SIZE, Engine


@contextlib.contextmanager
def on_one_cpu():
    had = os.sched_getaffinity(0)
    cpu = ctypes.CDLL(None, use_errno=True).sched_getcpu()
    os.sched_setaffinity(0, {cpu} if cpu >= 0 else {min(had)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, had)


class KernelEngine(Engine):
    """A compiled program (``art``: compiler.driver.Artifacts of the replay build)
    loaded into the kernel, ready to replay frames."""

    name = "kernel"

    def __init__(self, art, *, poll_every: int = 1, queue_size: int = QUEUE_SIZE, memory_budget: int | None = None,
                 pin_dir: str | None = None):
        manifest = Manifest.of(art.manifest)
        if not manifest.replay:
            raise ValueError("replay needs the replay build of the program (compile with replay=True)")
        self.memory = memory.estimate(art.plan)
        over = memory.check(self.memory, memory.Budget.of(memory_budget))
        if over:
            raise SpecError(over, art.sources)
        self.loaded: Loaded = load(art.c, stages=art.manifest.get("stages"), pin_dir=pin_dir)
        try:
            super().__init__(manifest, ProgramMaps(self.loaded.bpf, manifest), poll_every=poll_every,
                             queue_size=queue_size)
            self.runner = TestRunner(self.loaded.fd, want_data_out=False)
        except BaseException:
            self.loaded.close()
            raise

    def _run(self, ts_ns: int, data: bytes, wire_len: int) -> int | None:
        if len(data) < ETH_HLEN:
            return None
        res = self.runner.run(_HDR.pack(ts_ns, wire_len) + data)
        return res.retval if res.ok else None

    def close(self) -> None:
        self.loaded.close()
