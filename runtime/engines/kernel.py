"""Replay captures through the kernel: the loaded program runs on every frame
with BPF_PROG_TEST_RUN, on the capture's clock.

The program is the replay build (compiler ``replay=True``): each frame is
handed to the kernel preceded by its capture timestamp, which the program
reads and strips, so pkt.ts, windows, expiries, rate limits and enables follow
capture time. The kernel refuses XDP test runs of frames shorter than an
Ethernet header (14 bytes); such frames are counted as ``replay.refused`` and
never reach the program (no NIC delivers them either).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from runtime.dataplane.bpf_test_run import TestRunner
from runtime.dataplane.loader import Loaded, load
from runtime.dataplane.maps import ProgramMaps
from runtime.abi.snapshot import build_snapshot

XDP_PASS = 2
POLL_EVERY = 4096            # frames between ring buffer polls


@dataclass
class ReplayStats:
    frames: int = 0
    refused: int = 0
    verdicts: dict = field(default_factory=dict)
    last_ts: int = 0


class KernelEngine:
    """A compiled program loaded into the kernel, ready to replay frames."""

    name = "kernel"

    def __init__(self, c_source: str, manifest: dict):
        if not manifest["program"]["replay"]:
            raise ValueError("replay needs the replay build of the program (compile with replay=True)")
        self.manifest = manifest
        self.loaded: Loaded = load(c_source)
        self.maps = ProgramMaps(self.loaded.bpf, manifest)
        self.maps.init()
        self.events: list[dict] = []
        self.maps.open_events(self.events.append)
        self.runner = TestRunner(self.loaded.fd, want_data_out=False)
        self.stats = ReplayStats()

    def run_frame(self, ts_ns: int, data: bytes) -> int | None:
        """Run one frame; returns the XDP verdict, or None when refused."""
        st = self.stats
        st.frames += 1
        st.last_ts = max(st.last_ts, ts_ns)
        if len(data) < 14:
            st.refused += 1
            return None
        res = self.runner.run(struct.pack("<Q", ts_ns) + data)
        if not res.ok:
            st.refused += 1
            return None
        st.verdicts[res.retval] = st.verdicts.get(res.retval, 0) + 1
        if st.frames % POLL_EVERY == 0:
            self.maps.poll_events()
        return res.retval

    def snapshot(self, now: int | None = None) -> dict:
        self.maps.poll_events()
        raw = self.maps.raw_state()
        raw.events = list(self.events)
        snap = build_snapshot(self.manifest, raw, self.stats.last_ts if now is None else now)
        snap["counters"]["replay.refused"] = self.stats.refused
        return snap

    def close(self) -> None:
        self.loaded.close()
