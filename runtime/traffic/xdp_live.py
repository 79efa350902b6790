"""BPF_PROG_TEST_RUN in XDP live-frames mode (``BPF_F_TEST_XDP_LIVE_FRAMES``, kernel >= 5.18).

In this mode the kernel does not hand the frame back: it builds ``repeat`` frames
from ``data_in`` in pages of a page pool, runs the program on each, ``batch_size``
at a time (at most 256; 0: the kernel's 64), and acts on the verdict as a driver
would: ``XDP_TX`` is sent out of the context's ingress interface (the kernel turns it
into a redirect to that ifindex), ``XDP_REDIRECT`` where the program redirected,
``XDP_PASS`` goes up the stack, ``XDP_DROP`` is freed (net/bpf/test_run.c,
``bpf_test_run_xdp_live`` and ``xdp_test_run_batch``). What the kernel requires,
and this module checks before asking:

- ``ctx_in`` is a ``struct xdp_md`` with ``data`` = 0, ``data_end`` = the frame's
  length, ``data_meta`` = 0 and ``egress_ifindex`` = 0; ``ingress_ifindex`` names an
  interface *in the network namespace of the calling thread* (the kernel looks it up
  in ``current``'s namespace), ``rx_queue_index`` one of its receive queues;
- no ``data_out`` and no ``ctx_out`` (EINVAL otherwise);
- flags only ``BPF_F_TEST_XDP_LIVE_FRAMES``.

The syscall returns when all ``repeat`` frames went, or early with EINTR when a
signal is pending (the frames run so far went too: the caller's program counts them).
Each call makes a page pool and registers it as an XDP memory model (an id of at
most 65,534); the pool, and its id, go once the frames it sent are freed, which may
be later than the call. Thousands of calls a second can run out of ids for a moment:
the call fails with ENOSPC, and may be retried shortly after.

The attr is the one of runtime/dataplane/bpf_test_run.py.
"""

from __future__ import annotations

import ctypes
import functools
import os

from runtime.dataplane.bpf_test_run import BPF_PROG_TEST_RUN, ETH_HLEN, _syscall, _syscall_nr, _TestAttr

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1      # include/uapi/linux/bpf.h
MAX_BATCH = 256                          # TEST_XDP_MAX_BATCH in net/bpf/test_run.c
MAX_LINEAR = 3520                        # a live frame fits one page (no multi-buffer)


class XdpMd(ctypes.Structure):
    """``struct xdp_md`` (include/uapi/linux/bpf.h), the test run's context."""

    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


class LiveFrames:
    """Sends copies of one frame through program ``prog_fd`` in live-frames mode.

    ``ifindex`` is the interface the frames enter on (XDP_TX leaves by it), in the
    namespace of the thread that calls :meth:`run`. Not thread-safe.
    """

    def __init__(self, prog_fd: int, frame: bytes, ifindex: int, rx_queue: int = 0, batch_size: int = 64):
        if prog_fd is None or int(prog_fd) < 0:
            raise ValueError(f"invalid program fd {prog_fd!r}")
        frame = bytes(frame)
        if not ETH_HLEN <= len(frame) <= MAX_LINEAR:
            raise ValueError(f"a live frame has {ETH_HLEN} to {MAX_LINEAR} bytes, not {len(frame)}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size is 1 to {MAX_BATCH} frames, not {batch_size}")
        if ifindex <= 0:
            raise ValueError(f"ingress ifindex must be an interface's index, not {ifindex}")
        self._frame = ctypes.create_string_buffer(frame, len(frame))
        self._ctx = XdpMd(0, len(frame), 0, ifindex, rx_queue, 0)
        a = self._attr = _TestAttr()
        a.prog_fd = int(prog_fd)
        a.data_in = ctypes.addressof(self._frame)
        a.data_size_in = len(frame)
        a.ctx_in = ctypes.addressof(self._ctx)
        a.ctx_size_in = ctypes.sizeof(XdpMd)
        a.flags = BPF_F_TEST_XDP_LIVE_FRAMES
        a.batch_size = batch_size
        self._ref = ctypes.byref(a)
        self._size = ctypes.sizeof(_TestAttr)
        self._nr = _syscall_nr()

    def run(self, repeat: int) -> int:
        """Send ``repeat`` frames (one syscall); 0, or the errno of a failure the
        caller may retry (EINTR: stopped early by a signal; ENOSPC: no XDP memory
        model id free for now). Raises for any other error."""
        a = self._attr
        a.repeat = repeat
        a.duration = 0
        a.retval = 0
        if _syscall(self._nr, BPF_PROG_TEST_RUN, self._ref, self._size) == 0:
            return 0
        err = ctypes.get_errno()
        if err in (4, 28):                # EINTR; ENOSPC: see the module doc
            return err
        raise OSError(err, f"BPF_PROG_TEST_RUN (live frames) on prog fd {a.prog_fd}, ingress ifindex "
                           f"{self._ctx.ingress_ifindex}: {os.strerror(err)}" + _hint(err))

    @property
    def duration_ns(self) -> int:
        """The kernel's mean time per frame in the last call (ns)."""
        return int(self._attr.duration)


def _hint(err: int) -> str:
    if err == 19:                        # ENODEV
        return " (no such ingress interface in the calling thread's network namespace)"
    if err == 22:                        # EINVAL
        return (" (live frames need kernel >= 5.18, an XDP program, a registered receive queue of the "
                "ingress interface and no data_out/ctx_out)")
    return ""


_PROBE = "int xdpmon_live_probe(struct xdp_md *ctx) { return XDP_DROP; }"


@functools.lru_cache(maxsize=1)
def refusal() -> str | None:
    """None where this kernel runs live-frames test runs, else why not.

    The probe loads an XDP program that drops everything and asks for one live frame
    entering the loopback of the calling thread's namespace: nothing is sent. Some
    kernels refuse the mode outright (EPERM even to root, seen on a 6.18 build) while
    ordinary test runs work. Asked once per process."""
    import socket

    from bcc import BPF

    b = BPF(text=_PROBE)
    try:
        fn = b.load_func("xdpmon_live_probe", BPF.XDP)
        why = None
        try:
            LiveFrames(fn.fd, bytes(60), socket.if_nametoindex("lo")).run(1)
        except OSError as e:
            why = f"this kernel refuses live-frames test runs ({os.strerror(e.errno) if e.errno else e})"
    finally:
        b.cleanup()
    return why
