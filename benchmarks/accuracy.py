"""Accuracy of `distinct` (HyperLogLog) measured in the kernel.

One app keeps ``distinct(ip.src, ip.dst, l4.sport, l4.dport) window 1s``; each
seed sends ``n`` distinct random UDP flows inside its own one-second window
(so every seed starts from empty registers), and the estimate read at the end
of the window is compared with ``n``. Frames are built by patching a template,
so a run of 20 x 100,000 frames takes seconds.
"""

from __future__ import annotations

import math
import random
import statistics
import struct
import tempfile
from dataclasses import dataclass

S = 1_000_000_000
SPEC = "app acc { t2 { flows = distinct(ip.src, ip.dst, l4.sport, l4.dport) window 1s } }\n"


def _template() -> bytearray:
    from scapy.all import IP, UDP, Ether
    return bytearray(bytes(Ether() / IP(src="198.18.0.1", dst="198.19.0.1", chksum=0) / UDP(sport=1, dport=2, chksum=0)))


@dataclass
class Result:
    registers: int
    n: int
    seeds: int
    estimates: list[int]

    @property
    def rel_errors(self) -> list[float]:
        return [(e - self.n) / self.n for e in self.estimates]

    @property
    def mean_abs_rel_error(self) -> float:
        return statistics.mean(abs(x) for x in self.rel_errors)

    @property
    def rms_rel_error(self) -> float:
        return math.sqrt(statistics.mean(x * x for x in self.rel_errors))

    @property
    def bias(self) -> float:
        return statistics.mean(self.rel_errors)

    @property
    def theory(self) -> float:
        return 1.04 / math.sqrt(self.registers)


def measure(n: int = 100_000, seeds: int = 20) -> Result:
    from compiler.driver import compile_files
    from runtime.engines.kernel import KernelEngine

    with tempfile.NamedTemporaryFile("w", suffix=".mon") as f:
        f.write(SPEC)
        f.flush()
        art = compile_files([f.name], replay=True)
    eng = KernelEngine(art)
    registers = art.manifest["maps"][0]["slots"][0]["hll"]["registers"]
    frame = _template()
    # IPv4 source at 26, destination at 30, UDP ports at 34 and 36 (untagged Ethernet)
    estimates = []
    try:
        for seed in range(seeds):
            rnd = random.Random(seed)
            t0 = (100 + seed) * S
            seen = set()
            while len(seen) < n:
                seen.add(rnd.getrandbits(64))
            for i, v in enumerate(seen):
                struct.pack_into(">IIHH", frame, 26, 0xC6120000 | (v & 0x1FFFF), 0xC6130000 | ((v >> 17) & 0xFFFF),
                                 (v >> 33) & 0xFFFF, (v >> 49) & 0x7FFF)
                eng.run_frame(t0 + i, bytes(frame))
            snap = eng.snapshot(now=t0 + S - 1)
            estimates.append(snap["apps"]["acc"]["stats"]["flows"]["value"]["distinct"])
    finally:
        eng.close()
    return Result(registers, n, seeds, estimates)
