"""Each host's traffic, and what it should count.

Every host gets benign traffic of its own (``benign(host, seconds)``: the demo's mix of
runtime/demo/traffic.py, built by examples/traffic/generators.py, with a seed per host:
complete TCP connections to eight servers 198.19.0.1-8, DNS, tagged and IPv6 frames,
ARP and ICMP), sent at its times from the host's traffic peer by an AF_PACKET socket.
One host also gets a SYN flood towards ``VICTIM`` (one of those servers, so that every
host sends SYNs to it): the project's generator (runtime/traffic/livegen.py) at a fixed
rate from ``FLOOD_SOURCES`` spoofed sources, until it is stopped.

Both are sent by runtime/demo/sender.py, a process each (``Sender``), which reports
exactly what went. ``syns_to(frames, dst)`` counts the SYNs (SYN without ACK) towards
``dst`` in frames, decoding each with the XDP parser's reference decoder
(runtime/engines/reference/decoder.py): what the kernel counts, computed independently.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

from runtime.demo.sender import write_frames
from runtime.demo.traffic import benign_mix
from runtime.engines.reference.decoder import decode

VICTIM = "198.19.0.1"
FLOOD_SRC, FLOOD_SOURCES, FLOOD_SPORT, FLOOD_SPORTS = "198.18.128.0", 256, 1024, 4
FLOWS_PER_S = 10                  # benign TCP connections (and DNS exchanges) per second, per host


def benign(host_index: int, seconds: float) -> list[tuple[int, bytes]]:
    """Host ``host_index``'s benign frames: ``[(offset_ns, frame)]`` over ``seconds``."""
    return benign_mix(seconds, seed=1000 + 17 * host_index, flows_per_s=FLOWS_PER_S)


def syns_to(frames, dst: str) -> int:
    """SYNs without ACK towards IPv4 ``dst`` among ``frames`` (bytes)."""
    want = b"\0" * 10 + b"\xff\xff" + ipaddress.IPv4Address(dst).packed    # ip.dst: v4-mapped
    n = 0
    for f in frames:
        d = decode(f)
        if "tcp" in d.layers and d["tcp.syn"] and not d["tcp.ack"] and d.get("ip.dst") == want:
            n += 1
    return n


class Sender:
    """One sending process (``python -m runtime.demo.sender``) from a host's traffic peer;
    ``result()`` waits for its report: {"sent": n, ...}."""

    def __init__(self, what: str, root: Path, args: list[str]):
        self.what = what
        self.p = subprocess.Popen([sys.executable, "-m", "runtime.demo.sender", *args], cwd=root,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)       # Ctrl-C is the fleet's; it stops them

    @classmethod
    def benign(cls, root: Path, host, frames, path: Path, start_ns: int) -> "Sender":
        write_frames(str(path), frames)
        return cls(f"{host.name}'s benign traffic", root,
                   ["benign", "--netns", host.pair.peer_ns, "--ifname", host.pair.PEER_IF,
                    "--start-ns", str(start_ns), "--frames", str(path)])

    @classmethod
    def flood(cls, root: Path, host, start_ns: int, count: int, rate: float) -> "Sender":
        return cls(f"the flood on {host.name}", root,
                   ["flood", "--netns", host.pair.peer_ns, "--ifname", host.pair.PEER_IF,
                    "--start-ns", str(start_ns), "--src", FLOOD_SRC, "--sources", str(FLOOD_SOURCES),
                    "--sport", str(FLOOD_SPORT), "--sports", str(FLOOD_SPORTS), "--dst", VICTIM,
                    "--dst-mac", host.pair.mac("mon"), "--count", str(count), "--rate", str(rate)])

    def done(self) -> bool:
        return self.p.poll() is not None

    def stop_early(self) -> None:
        """SIGTERM: the sender stops after its current call and reports what went."""
        if self.p.poll() is None:
            self.p.terminate()

    def result(self, timeout: float) -> dict:
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.what}: the sender did not finish within {timeout:.0f} s") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"{self.what}: the sender exited with {self.p.returncode} and no report: "
                               f"{err.strip()[-500:]}")
        res = json.loads(lines[-1])
        if "error" in res:
            raise RuntimeError(f"{self.what}: {res['error']}")
        return res

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()
