"""A demo's sending process: ``python -m runtime.demo.sender flood|benign ARGS``.

Each kind runs in a process of its own, so that a sender spinning to keep its pace
never holds the monitor's interpreter. It waits until ``--start-ns`` (CLOCK_MONOTONIC,
the program's clock), sends, and prints one JSON line: what it sent, from when to when.
SIGTERM stops it early (what went is still reported); it dies with its parent
(PR_SET_PDEATHSIG), so a killed demo leaves no sender behind.

- ``flood``: the flood's SYNs from the generator (runtime/traffic/livegen.py
  ``open_generator``: live frames where the kernel runs them, else the transmit ring),
  ``--count`` frames at ``--rate``, out of ``--ifname`` in ``--netns``.
- ``benign``: the frames of ``--frames FILE`` (length-prefixed, each with its offset
  in ns from the start), each sent at its time from an AF_PACKET socket.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import signal
import socket
import struct
import sys
import time

PR_SET_PDEATHSIG = 1
_stop = []


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait_until(t_ns: int) -> None:
    while not _stop:
        left = t_ns - time.monotonic_ns()
        if left <= 0:
            return
        time.sleep(min(left / 1e9, 0.05))


def write_frames(path: str, frames) -> int:
    """Store ``[(offset_ns, frame)]`` for ``benign --frames``."""
    n = 0
    with open(path, "wb") as f:
        for off, data in frames:
            f.write(struct.pack("<QI", off, len(data)) + data)
            n += 1
    return n


def read_frames(path: str):
    data = open(path, "rb").read()
    off = 0
    while off < len(data):
        t, n = struct.unpack_from("<QI", data, off)
        yield t, data[off + 12:off + 12 + n]
        off += 12 + n


def flood(a) -> dict:
    from runtime.traffic import frames as F
    from runtime.traffic.livegen import open_generator

    t = F.build("tcp-syn", a.src, a.dst, sport=a.sport, dport=80, dst_mac=a.dst_mac)
    gen = open_generator(t, a.ifname, a.netns, src_count=a.sources, sport_count=a.sports, batch_size=64,
                         backend=a.backend)
    try:
        _wait_until(a.start_ns)
        first = time.monotonic_ns()
        r = gen.send(a.count, a.rate, chunk=128, timeout_s=a.count / a.rate * 2 + 5,
                     should_stop=lambda: bool(_stop))
        last = time.monotonic_ns()
    finally:
        gen.close()
    return {"kind": "flood", "backend": gen.backend, "first_ns": first, "last_ns": last, "sent": r.sent,
            "requested": r.requested, "rate_pps": r.rate_pps, "late_calls": r.late_calls, "calls": r.calls,
            "stopped": bool(_stop), "timed_out": r.timed_out, "device_busy": getattr(gen, "busy", 0)}


def benign(a) -> dict:
    from runtime.traffic.netns import in_netns

    with in_netns(a.netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((a.ifname, 0))
    sent = 0
    first = last = None
    for off, f in read_frames(a.frames):
        _wait_until(a.start_ns + off)
        if _stop:
            break
        s.send(f)
        last = time.monotonic_ns()
        first = first or last
        sent += 1
    return {"kind": "benign", "first_ns": first, "last_ns": last, "sent": sent, "stopped": bool(_stop)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.demo.sender")
    ap.add_argument("kind", choices=["flood", "benign"])
    ap.add_argument("--netns", required=True)
    ap.add_argument("--ifname", required=True)
    ap.add_argument("--start-ns", type=int, required=True)
    ap.add_argument("--frames")
    ap.add_argument("--src")
    ap.add_argument("--sources", type=int, default=1)
    ap.add_argument("--sport", type=int, default=1024)
    ap.add_argument("--sports", type=int, default=1)
    ap.add_argument("--dst")
    ap.add_argument("--dst-mac", default="02:00:00:00:00:01")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--backend", default="auto")
    a = ap.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: _stop.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # the demo's Ctrl-C is the parent's to handle
    try:
        out = flood(a) if a.kind == "flood" else benign(a)
    except Exception as e:
        out = {"kind": a.kind, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
