"""Helpers for the tests that run small specs through an engine: frames, a clock,
and a factory of engines that closes them when the test ends.

Frames use explicit Ethernet addresses (scapy would otherwise resolve them, on
the network) and the benchmarking range 198.18.0.0/15.
"""

from __future__ import annotations

from scapy.all import IP, TCP, UDP, Ether

from compiler.driver import compile_files
from runtime.engines import open_engine

S = 1_000_000_000


def Eth(**kw):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def tcp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=80, flags="S", pad=0):
    return bytes(Eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / (b"x" * pad))


def udp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=53, pad=0):
    return bytes(Eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"x" * pad))


def run(eng, frames, t0=S, step=1000):
    """Frames ``step`` ns apart from ``t0``."""
    for i, f in enumerate(frames):
        eng.run_frame(t0 + i * step, f)


def stat(snap, app, name):
    return snap["apps"][app]["stats"][name]


class EngineMaker:
    """``make(spec, **options)``: the engine ``kind`` for one spec text (replay build)."""

    def __init__(self, kind: str, tmp_path):
        self.kind = kind
        self.tmp = tmp_path
        self.made = []
        self.arts = []           # the artifacts of each engine made

    def __call__(self, spec: str, **options):
        path = self.tmp / f"spec{len(self.made)}.mon"
        path.write_text(spec)
        art = compile_files([str(path)], replay=True)
        eng = open_engine(self.kind, art, **options)
        self.made.append(eng)
        self.arts.append(art)
        return eng

    def close(self):
        for e in self.made:
            e.close()
