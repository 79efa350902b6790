"""The generator's second way of sending: an AF_PACKET socket with a transmit ring.

Where the kernel refuses live-frames test runs (xdp_live.py: some kernels answer EPERM
even to root), ``TxRingGenerator`` sends the same frames with the same rule as
livegen.c (frame ``n`` has source ``src_base + n % src_count`` and source port
``sport_base + (n / src_count) % sport_count``), from a ``PACKET_TX_RING``
(TPACKET_V2) with ``PACKET_QDISC_BYPASS``: the frames are built once into the ring
(``frames.rewrite``, exact checksums), a send marks the next ``n`` slots ready and one
``send()`` has the kernel transmit them all, so a call costs one syscall for up to
``chunk`` frames, as a live test run does. It reaches several hundred thousand frames a
second on a veth here: enough for the demo and the tests, less than live frames.

The ring holds a whole number of cycles of the distinct frames (``src_count x
sport_count``), at most ``MAX_RING_BYTES``; more distinct frames than fit is refused.
What went is what the kernel took: a slot is sent when the kernel has set it back
to available. A device that cannot take a frame now (a veth whose peer's ring is full)
makes ``send()`` fail with ENOBUFS and leaves that frame and the rest marked; the call
is made again at once (``busy`` counts them), so no frame of a chunk is skipped. It has the interface of LiveGenerator (``send``, ``frames_sent``, ``close``),
without ``send_parallel`` and ``redirect_to``.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import socket
import struct
import threading
import time

import numpy as np

from . import frames as F
from .netns import in_netns
from .pacing import SendResult, check_send, paced

SOL_PACKET, PACKET_VERSION, PACKET_TX_RING, PACKET_LOSS, PACKET_QDISC_BYPASS = 263, 10, 13, 14, 20
TPACKET_V2 = 1
TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST, TP_STATUS_WRONG_FORMAT = 0, 1, 4
HDR_LEN = 32                      # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): where a frame's data starts
PAGE = 4096
MIN_SLOTS = 2048                  # several calls' worth of frames in flight (calls of up to 1,024)
MAX_RING_BYTES = 64 << 20
BUSY_TIMEOUT_S = 2.0              # a device that takes no frame for this long refuses them


class TxRingGenerator:
    backend = "tx-ring"

    def __init__(self, template: F.Template, ifname: str, netns: str | None = None, *, src_count: int = 1,
                 sport_count: int = 1, batch_size: int = 64):
        F.check_flows(template, src_count, sport_count)
        self.template, self.ifname, self.netns = template, ifname, netns
        self.src_count, self.sport_count, self.batch_size = src_count, sport_count, batch_size
        self.frame_size = max(128, 1 << math.ceil(math.log2(HDR_LEN + len(template.frame))))
        per_block = PAGE // self.frame_size if self.frame_size <= PAGE else 1
        block = max(PAGE, self.frame_size)
        flows = src_count * sport_count
        cycle = flows * per_block // math.gcd(flows, per_block)         # whole flows and whole blocks
        self.slots = cycle * math.ceil(MIN_SLOTS / cycle)
        if self.slots * self.frame_size > MAX_RING_BYTES:
            raise ValueError(f"{flows:,} distinct frames do not fit the transmit ring "
                             f"({MAX_RING_BYTES >> 20} MiB of {self.frame_size}-byte slots)")
        self._lock = threading.Lock()
        self._sent = 0
        self._pos = 0
        self.busy = 0                 # sends the device refused for now (ENOBUFS), made again
        with in_netns(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s = self.sock
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            s.setsockopt(SOL_PACKET, PACKET_LOSS, 1)            # a frame the device refuses is skipped
            nblocks = self.slots * self.frame_size // block
            s.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack("IIII", block, nblocks, self.frame_size,
                                                                  self.slots))
            self.ring = mmap.mmap(s.fileno(), self.slots * self.frame_size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
            self._status = np.frombuffer(self.ring, dtype=np.uint32)[::self.frame_size // 4]
            n = len(template.frame)
            for i in range(self.slots):
                off = i * self.frame_size
                src, sport = F.nth_flow(template, i, src_count, sport_count)
                struct.pack_into("III", self.ring, off + 4, n, n, 0)    # tp_len, tp_snaplen
                self.ring[off + HDR_LEN:off + HDR_LEN + n] = F.rewrite(template, src, sport)
            with in_netns(netns):
                s.bind((ifname, 0))
        except BaseException:
            self.close()
            raise

    def frames_sent(self) -> int:
        return self._sent

    def _send_chunk(self, n: int) -> tuple[int, float]:
        """Mark ``n`` slots ready and have the kernel send them. A device that cannot take a
        frame now (a veth whose peer's ring is full: ENOBUFS) leaves it, and the rest, marked:
        the kernel sends them at the next call, made at once, until all went or
        ``BUSY_TIMEOUT_S`` passed (then the device is taken to refuse frames, and it says so)."""
        pos, slots = self._pos, self.slots
        idx = (np.arange(n) + pos) % slots
        self._status[idx] = TP_STATUS_SEND_REQUEST
        t0 = time.perf_counter_ns()
        give_up = t0 + int(BUSY_TIMEOUT_S * 1e9)
        while True:
            try:
                self.sock.send(b"")
            except (InterruptedError, BlockingIOError):
                pass
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.busy += 1
            st = self._status[idx]
            if np.any(st == TP_STATUS_WRONG_FORMAT):
                raise OSError(f"the kernel refused a frame of the transmit ring on {self.ifname} (wrong format)")
            if not np.any(st != TP_STATUS_AVAILABLE):
                break
            if time.perf_counter_ns() > give_up:
                raise OSError(errno.ENOBUFS, f"{self.ifname} took no frame for {BUSY_TIMEOUT_S:g} s "
                                             f"(ENOBUFS: its peer is not receiving)")
            os.sched_yield()
        took = time.perf_counter_ns() - t0
        self._pos = (pos + n) % slots
        self._sent += n
        return 0, took / n

    def send(self, count: int, rate_pps: float | None = None, *, chunk: int | None = None, cpu: int | None = None,
             fifo_priority: int | None = None, timeout_s: float = 30.0, should_stop=None) -> SendResult:
        """``LiveGenerator.send``: ``count`` frames at ``rate_pps`` (None: back to back),
        ``chunk`` frames per call, from the calling thread (pinned to ``cpu``, and SCHED_FIFO
        at ``fifo_priority``, while it sends)."""
        chunk = min(chunk or self.batch_size, self.slots // 2)
        check_send(count, rate_pps, timeout_s, chunk, fifo_priority)
        with self._lock:
            old_cpus, old_sched = os.sched_getaffinity(0), (os.sched_getscheduler(0), os.sched_getparam(0))
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            if fifo_priority is not None:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo_priority))
            try:
                return paced(self._send_chunk, self.frames_sent, count, rate_pps, chunk, timeout_s, should_stop)
            finally:
                os.sched_setscheduler(0, *old_sched)
                os.sched_setaffinity(0, old_cpus)

    def close(self) -> None:
        ring, self.ring = getattr(self, "ring", None), None
        self._status = None
        if ring is not None:
            ring.close()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
