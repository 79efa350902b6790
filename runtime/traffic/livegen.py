"""The live traffic generator: frames at a controlled rate, out of a veth in a namespace.

``LiveGenerator(template, ifname, netns=...)`` loads livegen.c (an XDP program that
rewrites the source of each frame and returns XDP_TX, or XDP_REDIRECT to another
interface) and sends with BPF_PROG_TEST_RUN in live-frames mode (xdp_live.py): the
kernel runs the program on copies of the template and transmits them, no socket, no
skb: one core offered about 2 million frames per second here, in calls of 1,000
frames or more (per call the kernel makes a page pool: tens of microseconds), about
1.3 million in calls of 64. ``send(count, rate_pps)``
sends exactly ``count`` frames (the program counts what it handed to the kernel),
``chunk`` frames per syscall, the calls paced by the clock: call ``k`` starts at
``k * chunk / rate`` (sleeping, then spinning the last half millisecond); with no
rate, back to back. It runs in a thread of its own that enters ``netns`` (the kernel
looks the ingress interface up in the caller's namespace) and, with ``cpu``, is
pinned to that CPU; ``send_parallel`` sends from one such thread per CPU at once.
Everything is bounded: ``count`` at most ``pacing.MAX_FRAMES`` per call, and ``timeout_s``
(the send stops there and says so). While loaded, the program is also attached to the
namespace's loopback (see ``_keep_in_dispatcher``); ``close()`` removes both.

What went out is what the program counted; what arrived is for the receiver to say
(a veth drops frames it cannot queue: its peer's ring holds 256, and ``ip -s link``
counts the drops as the receiver's rx_dropped).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from pathlib import Path

from runtime.dataplane import libbpf

from . import frames as F
from .netns import in_netns
from .pacing import SendResult, check_send, paced
from .xdp_live import MAX_BATCH, LiveFrames

SOURCE = Path(__file__).with_name("livegen.c")
XDP_TX, XDP_REDIRECT = 3, 4


class _Cfg(ctypes.Structure):
    """``struct lg_cfg`` of livegen.c."""
    _fields_ = [("src_base", ctypes.c_uint32), ("src_count", ctypes.c_uint32), ("sport_count", ctypes.c_uint32),
                ("sport_base", ctypes.c_uint16), ("ip_check", ctypes.c_uint16), ("l4_check", ctypes.c_uint16),
                ("l4_check_off", ctypes.c_uint16), ("action", ctypes.c_uint32), ("ifindex", ctypes.c_uint32),
                ("in_ifindex", ctypes.c_uint32)]


def open_generator(template: F.Template, ifname: str, netns: str | None = None, *, src_count: int = 1,
                   sport_count: int = 1, batch_size: int = 64, backend: str = "auto"):
    """The generator: live frames (LiveGenerator) where the kernel runs them, else the
    transmit ring (txring.py), which sends the same frames more slowly. ``backend``:
    "auto", "live-frames" or "tx-ring". Its ``backend`` attribute says which it is."""
    from . import xdp_live

    if backend not in ("auto", "live-frames", "tx-ring"):
        raise ValueError(f"backend is auto, live-frames or tx-ring, not {backend!r}")
    if backend == "auto":
        with in_netns(netns):
            backend = "tx-ring" if xdp_live.refusal() else "live-frames"
    if backend == "live-frames":
        return LiveGenerator(template, ifname, netns, src_count=src_count, sport_count=sport_count,
                             batch_size=batch_size)
    from .txring import TxRingGenerator
    return TxRingGenerator(template, ifname, netns, src_count=src_count, sport_count=sport_count,
                           batch_size=batch_size)


def _ifindex(netns: str | None, ifname: str) -> int:
    with in_netns(netns):
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            where = f"network namespace '{netns}'" if netns else "this network namespace"
            raise ValueError(f"no interface '{ifname}' in {where}") from None


class LiveGenerator:
    """Sends ``template`` out of ``ifname`` (in ``netns``), ``src_count`` sources and
    ``sport_count`` source ports in turn (one new flow per frame when either is > 1).

    ``redirect_to``: the frames leave by that interface of the same namespace
    (XDP_REDIRECT) instead of by ``ifname`` (XDP_TX). ``batch_size``: frames the
    kernel runs between two flushes to the device (1..256).
    """
    backend = "live-frames"

    def __init__(self, template: F.Template, ifname: str, netns: str | None = None, *, src_count: int = 1,
                 sport_count: int = 1, redirect_to: str | None = None, batch_size: int = 64, rx_queue: int = 0):
        F.check_flows(template, src_count, sport_count)
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size is 1..{MAX_BATCH}, not {batch_size}")
        self.template, self.ifname, self.netns = template, ifname, netns
        self.src_count, self.sport_count, self.batch_size = src_count, sport_count, batch_size
        self._keeper: int | None = None
        self.ifindex = _ifindex(netns, ifname)
        target = _ifindex(netns, redirect_to) if redirect_to else 0
        from bcc import BPF
        self.bpf = BPF(text=SOURCE.read_text())
        try:
            self.fn = self.bpf.load_func("livegen", BPF.XDP)
            import ipaddress
            cfg = _Cfg(int(ipaddress.IPv4Address(template.src)), src_count, sport_count, template.sport,
                       template.ip_check, template.l4_check, template.l4_check_off,
                       XDP_REDIRECT if redirect_to else XDP_TX, target, self.ifindex)
            self.bpf["lg_config"][ctypes.c_int(0)] = cfg
            self._live = LiveFrames(self.fn.fd, template.frame, self.ifindex, rx_queue, batch_size)
            self._keeper = self._keep_in_dispatcher()
        except BaseException:
            self.bpf.cleanup()
            raise

    def _keep_in_dispatcher(self) -> int:
        """Attach the program to the namespace's loopback (generic XDP, a BPF link).

        A test run with ``repeat > 1`` puts its program into the kernel's XDP
        dispatcher and takes it out again at the end (bpf_prog_change_xdp), each
        a dispatcher rebuild that waits for RCU: about 24 ms per call here, which
        would make paced calls of a few frames impossible. A program attached
        somewhere stays in the dispatcher, and the calls cost microseconds. The
        loopback of a namespace made by ``ip netns add`` is down (nothing arrives),
        and the program passes whatever does arrive there (its ingress check).
        The link goes when it is closed, or with the process."""
        with in_netns(self.netns):
            return libbpf.link_create(self.fn.fd, socket.if_nametoindex("lo"), libbpf.MODE_FLAGS["generic"])

    @property
    def prog_fd(self) -> int:
        return self.fn.fd

    def frames_sent(self) -> int:
        """Frames the program has handed to the kernel since it was loaded."""
        return sum(int(v.frames) for v in self.bpf["lg_counter"][ctypes.c_int(0)])

    def send(self, count: int, rate_pps: float | None = None, *, chunk: int | None = None, cpu: int | None = None,
             fifo_priority: int | None = None, timeout_s: float = 30.0, should_stop=None) -> SendResult:
        """Send ``count`` frames at ``rate_pps`` (None: as fast as the kernel goes).

        ``cpu``: pin the sending thread there; ``fifo_priority``: run it SCHED_FIFO at
        that priority (1..99), so that other processes on a shared machine do not
        delay its calls (the kernel's real-time throttling still leaves them 5 %).
        ``should_stop``: asked before each call; True ends the send early."""
        chunk = chunk or self.batch_size
        check_send(count, rate_pps, timeout_s, chunk, fifo_priority)
        box: dict = {}
        t = threading.Thread(target=self._send_thread, args=(box, count, rate_pps, chunk, cpu, fifo_priority,
                                                             timeout_s, None, should_stop),
                             name="livegen", daemon=True)
        t.start()
        t.join(timeout_s + 10)
        if t.is_alive():
            raise RuntimeError(f"the generator thread did not stop within {timeout_s + 10:.0f} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def send_parallel(self, count: int, rate_pps: float | None, cpus: list[int], *, chunk: int | None = None,
                      fifo_priority: int | None = None, timeout_s: float = 30.0) -> SendResult:
        """``send`` from one thread per CPU of ``cpus`` at once, ``count`` and ``rate_pps``
        shared evenly (each thread numbers its frames from 0: the sources repeat across
        threads). A veth sends to the receive queue of the sending CPU's number (modulo
        the queues), so this is how a multi-queue receiver gets every queue used."""
        if not cpus or len(set(cpus)) != len(cpus):
            raise ValueError(f"cpus must be distinct CPUs, not {cpus!r}")
        chunk = chunk or self.batch_size
        check_send(count, rate_pps, timeout_s, chunk, fifo_priority, least=len(cpus))
        k = len(cpus)
        shares = [count // k + (i < count % k) for i in range(k)]
        boxes = [{} for _ in cpus]
        before = self.frames_sent()
        threads = [threading.Thread(target=self._send_thread,
                                    args=(b, n, rate_pps / k if rate_pps else None, chunk, cpu, fifo_priority,
                                          timeout_s, LiveFrames(self.fn.fd, self.template.frame, self.ifindex,
                                                                0, self.batch_size)),
                                    name=f"livegen-{cpu}", daemon=True)
                   for b, n, cpu in zip(boxes, shares, cpus)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout_s + 10)
        if any(t.is_alive() for t in threads):
            raise RuntimeError(f"a generator thread did not stop within {timeout_s + 10:.0f} s")
        for b in boxes:
            if "error" in b:
                raise b["error"]
        rs = [b["result"] for b in boxes]
        sent = self.frames_sent() - before
        elapsed = max(r.elapsed_s for r in rs)
        return SendResult(count, sent, elapsed, sent / elapsed if elapsed > 0 else 0.0, rate_pps,
                          sum(r.calls for r in rs), chunk,
                          sum(r.kernel_ns_per_frame * r.sent for r in rs) / sent if sent else 0.0,
                          sum(r.late_calls for r in rs), any(r.timed_out for r in rs), sum(r.retries for r in rs))

    def _send_thread(self, box: dict, count: int, rate: float | None, chunk: int, cpu: int | None,
                     fifo: int | None, timeout_s: float, live: LiveFrames | None = None, should_stop=None) -> None:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})           # this thread only
            if fifo is not None:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo))
            with in_netns(self.netns):
                box["result"] = self._paced(live or self._live, count, rate, chunk, timeout_s, should_stop)
        except BaseException as e:                       # handed to send()
            box["error"] = e

    def _paced(self, live: LiveFrames, count: int, rate: float | None, chunk: int, timeout_s: float,
               should_stop=None) -> SendResult:
        """One thread's paced calls; its count is its own (no other thread may send on
        this CPU meanwhile)."""
        def send_chunk(n: int) -> tuple[int, float]:
            err = live.run(n)
            return err, (0.0 if err else live.duration_ns)
        return paced(send_chunk, self._cpu_frames, count, rate, chunk, timeout_s, should_stop)

    def _cpu_frames(self) -> int:
        """Frames counted on the calling thread's CPU (the thread is pinned while it sends:
        without a pin, the total)."""
        values = self.bpf["lg_counter"][ctypes.c_int(0)]
        mine = os.sched_getaffinity(0)
        if len(mine) != 1:
            return sum(int(v.frames) for v in values)
        return int(values[next(iter(mine))].frames)

    def close(self) -> None:
        if self._keeper is not None:
            os.close(self._keeper)           # the link: the program leaves lo
            self._keeper = None
        self.bpf.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
