"""Load a generated program into the kernel with BCC.

``load(c_source)`` compiles the C with BCC, loads the XDP function, and returns
a ``Loaded`` handle with the BPF object, the program fd and the kernel's view
of the program (xlated and jited sizes, verified instructions). Whatever stops
it becomes a ``LoadError`` (``load_errors``: a one-line reason taken from the log
BCC printed, what failed, whether the generated program is at fault, the log).

LLVM reports some back-end errors (the 512-byte stack limit, ...) by ending the
process. A command-line process calls ``survive_fatal_exits(report)`` first:
then each compile runs under ``fatal_exit.fork_watched`` and such an end is
turned into a ``LoadError`` that ``report`` prints (runtime/dataplane/fatal_exit.py).
A map the kernel cannot create for want of memory is reported as memory, never
as a compiler bug (compiler/memory.py estimates the maps before loading).

The C is compiled with warnings on (``WARNINGS``); what clang says about the
generated code is kept in ``Loaded.warnings`` (and shown by the CLI). With
``XDPMON_WERROR=1`` in the environment (the test suite sets it) a warning is an
error, so no generated program in the tests has one.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Callable

from . import fatal_exit
from .load_errors import LoadError, compile_failure, errno_of, fatal_failure, program_failure

__all__ = ["FUNCTION", "LoadError", "Loaded", "ProgInfo", "load", "prog_info", "survive_fatal_exits"]

FUNCTION = "xdpmon_main"
# -Wno-unused-parameter: the kernel headers BCC includes have inline stubs with
# unused parameters; nothing in the generated code depends on it being off.
WARNINGS = ["-Wall", "-Wextra", "-Wno-unused-parameter"]
_WARNING = re.compile(r"^/virtual/main\.c:(\d+):(\d+): (?:warning|error): (.*)$", re.M)
_SYS_BPF = 321                   # x86_64; see runtime/dataplane/bpf_test_run.py for others
BPF_OBJ_GET_INFO_BY_FD = 15


@dataclass
class ProgInfo:
    id: int
    xlated_bytes: int
    jited_bytes: int
    verified_insns: int
    n_maps: int = 0                # maps the program uses (the kernel's nr_map_ids)

    @property
    def xlated_insns(self) -> int:
        return self.xlated_bytes // 8


@dataclass
class Loaded:
    bpf: object                    # bcc.BPF
    fn: object                     # bcc function handle of the entry point
    info: ProgInfo                 # the entry point's
    warnings: list[str] = None     # clang's warnings about the generated C, "LINE:COL: text"
    stages: list = None            # ProgInfo of every stage, the entry point first

    @property
    def verified_insns(self) -> int:
        """Instructions the verifier processed, over all stages."""
        return sum(s.verified_insns for s in self.stages or [self.info])

    @property
    def fd(self) -> int:
        return self.fn.fd

    def close(self) -> None:
        try:
            self.bpf.cleanup()
        except Exception:
            pass


class _BpfProgInfo(ctypes.Structure):
    # The leading part of struct bpf_prog_info (include/uapi/linux/bpf.h).
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32), ("gpl_compatible", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64), ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32), ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64), ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32), ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64), ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64), ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32), ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
    ]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def prog_info(fd: int) -> ProgInfo:
    libc = ctypes.CDLL(None, use_errno=True)
    info = _BpfProgInfo()
    attr = _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info))
    rc = libc.syscall(_SYS_BPF, BPF_OBJ_GET_INFO_BY_FD, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_OBJ_GET_INFO_BY_FD: {os.strerror(err)}")
    return ProgInfo(info.id, info.xlated_prog_len, info.jited_prog_len, info.verified_insns, info.nr_map_ids)


class _CaptureStderr:
    """BCC prints the verifier log on fd 2 from C: capture it at the fd level."""

    def __enter__(self):
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def restore(self) -> str:
        """Put fd 2 back; the text captured so far."""
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        return self.text

    def __exit__(self, *exc):
        self.restore()
        return False


_report_fatal: Callable[[LoadError], None] | None = None


def survive_fatal_exits(report: Callable[[LoadError], None]) -> None:
    """From now on this process survives LLVM ending it during a compile:
    ``report`` is called with the LoadError (in the process that waits), which
    then exits with status 1. For command-line processes (see fatal_exit.py)."""
    global _report_fatal
    _report_fatal = report


def _compile(BPF, c_source: str, flags: list[str], cap: "_CaptureStderr", watched: bool = True):
    if _report_fatal is None or not watched:
        return BPF(text=c_source, cflags=flags)

    def on_death(status: int) -> None:
        log = cap.restore()
        _report_fatal(fatal_failure(log, status))

    passed = fatal_exit.fork_watched(on_death)
    try:
        return BPF(text=c_source, cflags=flags)
    finally:
        passed()


VERIFIER_LOG_BYTES = 1 << 16     # the end of the log is what says why (kernels keep the end)


def _verifier_log(bpf, function: str = FUNCTION) -> str:
    """Load the compiled function again with the verifier's log on and return it.
    For the refusals after which BCC prints a guess of its own instead of the log
    (E2BIG: "at most 4096 insns", which is not this kernel's limit)."""
    from bcc import BPF
    from bcc.libbcc import lib

    name = function.encode()
    buf = ctypes.create_string_buffer(VERIFIER_LOG_BYTES)
    fd = lib.bcc_func_load(bpf.module, BPF.XDP, name, lib.bpf_function_start(bpf.module, name),
                           lib.bpf_function_size(bpf.module, name), lib.bpf_module_license(bpf.module),
                           lib.bpf_module_kern_version(bpf.module), 1, buf, len(buf), None, -1)
    if fd >= 0:
        os.close(fd)
    return buf.value.decode("utf-8", "replace")


def load(c_source: str, cflags: list[str] | None = None, stages: dict | None = None,
         pin_dir: str | None = None, function: str = FUNCTION, watched: bool = True) -> Loaded:
    """Compile and load; raise LoadError with the verifier's verdict on failure.

    ``stages`` (the manifest's "stages"): a program of several stages has each
    loaded and put in the program array at its index, so the entry point's tail
    calls reach it. ``pin_dir``: a directory in bpffs where the maps that outlive
    a program are pinned (compiler/pins.py): a map pinned there already is opened
    and used, the others are created and pinned (runtime/deploy/pindir.py checks
    the pinned ones first). ``watched=False``: not under fork_watched even where the
    process survives fatal exits (a running instance has threads, which a fork would
    lose: its next programs are compiled by a process of their own, runtime/deploy/verify.py;
    only the fold program's fixed template is compiled in the instance)."""
    try:
        from bcc import BPF
    except ImportError as e:  # pragma: no cover - setup installs python3-bpfcc
        raise LoadError(f"BCC is not available: {e}; run 'make setup'", kind="unavailable") from None
    if os.geteuid() != 0:
        raise LoadError("loading an XDP program needs root (CAP_BPF and CAP_NET_ADMIN); run as root, "
                        "or replay with --engine reference", kind="unavailable")
    flags = WARNINGS + (["-Werror"] if os.environ.get("XDPMON_WERROR") == "1" else []) + list(cflags or [])
    if pin_dir is not None:
        flags.append(f"-DXM_PIN_DIR={json.dumps(str(pin_dir))}")
    bpf = fn = None
    with _CaptureStderr() as cap:
        try:
            bpf = _compile(BPF, c_source, flags, cap, watched)
            fn = bpf.load_func(function, BPF.XDP)
            fns = [fn] + _load_stages(bpf, stages, BPF.XDP)
        except Exception as e:
            err = e
        else:
            err = None
    log = cap.text
    warnings = [f"{m[0]}:{m[1]}: {m[2]}" for m in _WARNING.findall(log)]
    if err is not None:
        if bpf is None:
            raise compile_failure(log, c_source) from None
        if errno_of(str(err)) in (errno.E2BIG, errno.ENOMEM):
            with _CaptureStderr():
                log += "\n" + _verifier_log(bpf, function)
        bpf.cleanup()
        raise program_failure(str(err), log, c_source) from None
    return Loaded(bpf, fn, prog_info(fn.fd), warnings, [prog_info(f.fd) for f in fns])


def _load_stages(bpf, stages: dict | None, prog_type) -> list:
    """Load stages 1, 2, ... and fill the program array; returns their handles."""
    if not stages or not stages.get("map"):
        return []
    table = bpf[stages["map"]]
    fns = []
    for i, name in enumerate(stages["functions"][1:], start=1):
        f = bpf.load_func(name, prog_type)
        table[ctypes.c_int(i)] = ctypes.c_int(f.fd)
        fns.append(f)
    return fns
