"""Run a loaded XDP program on a frame with BPF_PROG_TEST_RUN (bpf(2), no libbpf).

The kernel executes the real, verified and JIT-compiled program on a copy of the frame
and reports its return value (the XDP verdict), its run time and the frame as the
program left it. ``xdpmon replay`` and the kernel tests use this to drive generated
programs without live traffic.

Frames the kernel will not run
------------------------------
For XDP the kernel refuses (EINVAL) a frame shorter than ``ETH_HLEN`` (14 bytes): an
XDP program can assume a whole Ethernet header was received. Such frames are not
errors here: :func:`test_run` returns a :class:`TestRunResult` whose ``refused`` is a
short reason and whose ``retval`` is ``None`` (the caller counts them; the program never
saw them). A frame longer than what fits in one page of linear data
(:data:`XDP_TEST_RUN_LINEAR`, 3520 bytes on x86_64 with 4 KiB pages) is run as a
multi-buffer frame: the program sees only the first 3520 bytes between ``data`` and
``data_end`` (``bpf_xdp_get_buff_len()`` still gives the whole length). A frame too long
even for that (about 73 KB: MAX_SKB_FRAGS pages) is refused by the kernel (ENOMEM) and
gets the same "refused" result. Every other failure raises ``OSError`` with the errno
text.

Speed
-----
One frame costs one ``bpf(2)`` call. :class:`TestRunner` keeps the ``bpf_attr`` and the
output buffer allocated once and points ``data_in`` straight at the ``bytes`` object
(no copy), which is what makes :meth:`TestRunner.run_many` fast (see the test report
for measured numbers; the target is well over 100k frames/s).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
from dataclasses import dataclass
from typing import Iterable, Iterator

__all__ = [
    "BPF_PROG_TEST_RUN",
    "ETH_HLEN",
    "TestRunResult",
    "TestRunner",
    "test_run",
    "test_run_many",
]

# bpf(2) syscall numbers per machine (asm/unistd_64.h and friends).
_SYS_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "riscv64": 280,
    "ppc64le": 361,
    "s390x": 351,
}
BPF_PROG_TEST_RUN = 10  # enum bpf_cmd
ETH_HLEN = 14
# Bytes of a frame that BPF_PROG_TEST_RUN puts in the linear part of an XDP buffer (what
# the program reaches through data..data_end): PAGE_SIZE - XDP_PACKET_HEADROOM (256) -
# sizeof(struct skb_shared_info) (320 on x86_64). Longer frames are run as multi-buffer
# frames (the rest sits in page fragments, up to MAX_SKB_FRAGS pages: ~73 KB in all);
# longer still are refused with ENOMEM. tests/test_parse_kernel.py checks this number.
XDP_TEST_RUN_LINEAR = 3520
MAX_SKB_FRAGS = 17          # page fragments of a multi-buffer frame
XDP_TEST_RUN_MAX = XDP_TEST_RUN_LINEAR + MAX_SKB_FRAGS * 4096    # longest input the kernel runs
_TOO_BIG_ERRNOS = (_errno.EINVAL, _errno.ENOMEM, _errno.E2BIG)

XDP_VERDICTS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}


class _TestAttr(ctypes.Structure):
    """The ``test`` member of ``union bpf_attr`` (include/uapi/linux/bpf.h).

    The kernel accepts a shorter attr than its own union as long as we pass our size;
    fields it knows beyond ours are taken as zero.
    """

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),  # in: size of data_out; out: bytes written
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),  # out: mean ns per run
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class TestRunResult:
    """What one BPF_PROG_TEST_RUN returned.

    ``retval`` is the program's return value (for XDP the verdict, 2 = XDP_PASS), or
    ``None`` when the kernel refused to run the frame; ``refused`` then says why.
    ``duration_ns`` is the kernel's mean time per run (over ``repeat`` runs).
    ``data_out`` is the frame after the program ran (empty when not requested).
    """

    __test__ = False  # not a pytest test class despite the name

    retval: int | None
    duration_ns: int
    data_out: bytes
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    @property
    def verdict(self) -> str:
        if self.retval is None:
            return "REFUSED"
        return XDP_VERDICTS.get(self.retval, str(self.retval))


def _too_big(n: int, err: int) -> str:
    return f"kernel refused a {n}-byte frame ({_errno.errorcode.get(err, err)}: {os.strerror(err)}; too big for an XDP test run)"


def _syscall_nr() -> int:
    machine = platform.machine()
    try:
        return _SYS_BPF[machine]
    except KeyError:
        raise OSError(_errno.ENOSYS, f"bpf(2) syscall number unknown for machine {machine!r}") from None


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_ulong]

# Larger than any page-sized linear XDP buffer; frames bigger than this (multi-buffer)
# get a bigger output buffer on demand.
_DEFAULT_OUT = 4096


class TestRunner:
    """Reusable BPF_PROG_TEST_RUN caller for one program fd.

    Not thread-safe (it owns one attr and one output buffer).
    """

    __test__ = False

    def __init__(self, prog_fd: int, *, want_data_out: bool = True) -> None:
        if prog_fd is None or int(prog_fd) < 0:
            raise ValueError(f"invalid program fd {prog_fd!r}")
        self.prog_fd = int(prog_fd)
        self.want_data_out = want_data_out
        self._nr = _syscall_nr()
        self._attr = _TestAttr()
        self._attr_ref = ctypes.byref(self._attr)
        self._attr_size = ctypes.sizeof(_TestAttr)
        self._out = ctypes.create_string_buffer(_DEFAULT_OUT)
        self._out_addr = ctypes.addressof(self._out)

    def _ensure_out(self, n: int) -> None:
        if n > len(self._out):
            self._out = ctypes.create_string_buffer(n)
            self._out_addr = ctypes.addressof(self._out)

    def _call(self, frame: bytes, repeat: int, want_out: bool) -> tuple[int, int]:
        """Issue the syscall; returns (rc, errno) without raising."""
        a = self._attr
        a.prog_fd = self.prog_fd
        a.retval = 0
        a.duration = 0
        a.data_size_in = len(frame)
        # c_char_p(bytes) points at the bytes object's own buffer: no copy.
        a.data_in = ctypes.cast(ctypes.c_char_p(frame), ctypes.c_void_p).value or 0
        a.repeat = repeat
        if want_out:
            # Room for the program to grow the frame (bpf_xdp_adjust_head/tail).
            self._ensure_out(len(frame) + 512)
            a.data_out = self._out_addr
            a.data_size_out = len(self._out)
        else:
            a.data_out = 0
            a.data_size_out = 0
        rc = _syscall(self._nr, BPF_PROG_TEST_RUN, self._attr_ref, self._attr_size)
        return rc, (ctypes.get_errno() if rc < 0 else 0)

    def run(self, frame: bytes, repeat: int = 1) -> TestRunResult:
        """Run the program on ``frame``; see the module doc for refused frames."""
        frame = bytes(frame)
        if len(frame) < ETH_HLEN:
            # The kernel answers EINVAL for these; do not even ask (and do not let a
            # 0-byte frame turn into a NULL data_in).
            return TestRunResult(None, 0, b"", f"frame of {len(frame)} bytes is shorter than ETH_HLEN ({ETH_HLEN})")
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        want_out = self.want_data_out
        rc, err = self._call(frame, repeat, want_out)
        if rc < 0:
            if err in _TOO_BIG_ERRNOS and len(frame) > XDP_TEST_RUN_LINEAR:
                return TestRunResult(None, 0, b"", _too_big(len(frame), err))
            raise OSError(err, f"BPF_PROG_TEST_RUN on prog fd {self.prog_fd} ({len(frame)}-byte frame): {os.strerror(err)}")
        a = self._attr
        out = ctypes.string_at(self._out_addr, a.data_size_out) if want_out else b""
        return TestRunResult(int(a.retval), int(a.duration), out)

    def run_many(self, frames: Iterable[bytes]) -> Iterator[TestRunResult]:
        """Run each frame once; yields one result per frame, in order.

        The hot loop: no data_out copy (unless ``want_data_out``), one syscall per frame.
        """
        if self.want_data_out:
            for f in frames:
                yield self.run(f)
            return
        a = self._attr
        a.prog_fd = self.prog_fd
        a.repeat = 1
        a.data_out = 0
        a.data_size_out = 0
        nr, ref, size = self._nr, self._attr_ref, self._attr_size
        cast, c_char_p, c_void_p = ctypes.cast, ctypes.c_char_p, ctypes.c_void_p
        syscall = _syscall
        for f in frames:
            if type(f) is not bytes:
                f = bytes(f)  # c_char_p needs a bytes object
            n = len(f)
            if n < ETH_HLEN:
                yield TestRunResult(None, 0, b"", f"frame of {n} bytes is shorter than ETH_HLEN ({ETH_HLEN})")
                continue
            a.data_size_in = n
            a.data_size_out = 0  # the kernel writes the output size back here: reset
            a.data_in = cast(c_char_p(f), c_void_p).value
            if syscall(nr, BPF_PROG_TEST_RUN, ref, size) < 0:
                err = ctypes.get_errno()
                if err in _TOO_BIG_ERRNOS and n > XDP_TEST_RUN_LINEAR:
                    yield TestRunResult(None, 0, b"", _too_big(n, err))
                    continue
                raise OSError(err, f"BPF_PROG_TEST_RUN on prog fd {self.prog_fd} ({n}-byte frame): {os.strerror(err)}")
            yield TestRunResult(a.retval, a.duration, b"")

    def retvals(self, frames: Iterable[bytes]) -> list[int | None]:
        """Fastest batch form: only the verdicts (``None`` for refused frames)."""
        a = self._attr
        a.prog_fd = self.prog_fd
        a.repeat = 1
        a.data_out = 0
        a.data_size_out = 0
        nr, ref, size = self._nr, self._attr_ref, self._attr_size
        cast, c_char_p, c_void_p = ctypes.cast, ctypes.c_char_p, ctypes.c_void_p
        syscall = _syscall
        out: list[int | None] = []
        append = out.append
        for f in frames:
            if type(f) is not bytes:
                f = bytes(f)  # c_char_p needs a bytes object
            n = len(f)
            if n < ETH_HLEN:
                append(None)
                continue
            a.data_size_in = n
            a.data_size_out = 0  # the kernel writes the output size back here: reset
            a.data_in = cast(c_char_p(f), c_void_p).value
            if syscall(nr, BPF_PROG_TEST_RUN, ref, size) < 0:
                err = ctypes.get_errno()
                if err in _TOO_BIG_ERRNOS and n > XDP_TEST_RUN_LINEAR:
                    append(None)
                    continue
                raise OSError(err, f"BPF_PROG_TEST_RUN on prog fd {self.prog_fd} ({n}-byte frame): {os.strerror(err)}")
            append(a.retval)
        return out


def test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> TestRunResult:
    """Run program ``prog_fd`` once (or ``repeat`` times) on ``frame``."""
    return TestRunner(prog_fd).run(frame, repeat)


test_run.__test__ = False  # type: ignore[attr-defined]


def test_run_many(prog_fd: int, frames: Iterable[bytes]) -> list[TestRunResult]:
    """Run every frame once (no data_out copy); one result per frame, in order."""
    return list(TestRunner(prog_fd, want_data_out=False).run_many(frames))


test_run_many.__test__ = False  # type: ignore[attr-defined]
