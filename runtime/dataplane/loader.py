"""Load a generated program into the kernel with BCC.

``load(c_source)`` compiles the C with BCC, loads the XDP function, and returns
a ``Loaded`` handle with the BPF object, the program fd and the kernel's view
of the program (xlated and jited sizes, verified instructions). A verifier
rejection becomes a ``LoadError`` carrying the verifier's last lines and the
generated C line it points at -- always a compiler bug, reported as such. A map
the kernel cannot create is a ``LoadError`` naming the map, with ``kind``
"memory" when the kernel had not the memory for it (ENOMEM: the machine, not
the compiler, is short; compiler/memory.py estimates it before loading) and
"map" otherwise.

The C is compiled with warnings on (``WARNINGS``); what clang says about the
generated code is kept in ``Loaded.warnings`` (and shown by the CLI). With
``XDPMON_WERROR=1`` in the environment (the test suite sets it) a warning is an
error, so no generated program in the tests has one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import tempfile
from dataclasses import dataclass

FUNCTION = "xdpmon_main"
# -Wno-unused-parameter: the kernel headers BCC includes have inline stubs with
# unused parameters; nothing in the generated code depends on it being off.
WARNINGS = ["-Wall", "-Wextra", "-Wno-unused-parameter"]
_WARNING = re.compile(r"^/virtual/main\.c:(\d+):(\d+): (?:warning|error): (.*)$", re.M)
_SYS_BPF = 321                   # x86_64; see runtime/dataplane/bpf_test_run.py for others
BPF_OBJ_GET_INFO_BY_FD = 15


class LoadError(RuntimeError):
    """``kind``: "compile" (clang), "verifier", "map" (a map the kernel did not
    create), "memory" (ENOMEM: not enough kernel memory) or "other"."""

    def __init__(self, message: str, log: str = "", c_line: int | None = None, c_text: str | None = None,
                 kind: str = "other", map_name: str | None = None):
        super().__init__(message)
        self.log = log
        self.c_line = c_line
        self.c_text = c_text
        self.kind = kind
        self.map_name = map_name


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
    fn: object                     # bcc function handle
    info: ProgInfo
    warnings: list[str] = None     # clang's warnings about the generated C, "LINE:COL: text"

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

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        return False


_C_LINE = re.compile(r"@ main\.c:(\d+)")
# What BCC prints when the kernel refuses to create a map (and then fails to "compile")
_MAP_FAILED = re.compile(r"could not open bpf map: (\S+?),? error: (.*)$", re.M)
_ENOMEM = os.strerror(errno.ENOMEM)


def _offending_line(log: str) -> int | None:
    lines = _C_LINE.findall(log)
    return int(lines[-1]) if lines else None


def load(c_source: str, cflags: list[str] | None = None) -> Loaded:
    """Compile and load; raise LoadError with the verifier's verdict on failure."""
    try:
        from bcc import BPF
    except ImportError as e:  # pragma: no cover - setup installs python3-bpfcc
        raise LoadError(f"BCC is not available: {e}; run 'make setup'") from None
    if os.geteuid() != 0:
        raise LoadError("loading an XDP program needs root (CAP_BPF and CAP_NET_ADMIN); run as root, "
                        "or replay with --engine reference")
    flags = WARNINGS + (["-Werror"] if os.environ.get("XDPMON_WERROR") == "1" else []) + list(cflags or [])
    with _CaptureStderr() as cap:
        try:
            bpf = BPF(text=c_source, cflags=flags)
        except Exception as e:
            err = e
            bpf = None
        else:
            err = None
            try:
                fn = bpf.load_func(FUNCTION, BPF.XDP)
            except Exception as e:
                err = e
    log = cap.text
    warnings = [f"{m[0]}:{m[1]}: {m[2]}" for m in _WARNING.findall(log)]
    if err is not None:
        if bpf is None:
            failed = _MAP_FAILED.search(log)
            if failed:
                name, why = failed.group(1), failed.group(2).strip()
                if why == _ENOMEM:
                    raise LoadError(f"the kernel could not allocate the memory for map {name} ({why})", log,
                                    kind="memory", map_name=name)
                raise LoadError(f"the kernel refused to create map {name}: {why}", log, kind="map", map_name=name)
            detail = f" (main.c:{warnings[0]})" if warnings else ""
            raise LoadError(f"the generated C did not compile: {err}{detail}", log, kind="compile")
        bpf.cleanup()
        if _ENOMEM in str(err):
            raise LoadError(f"the kernel could not allocate the memory to load the program ({_ENOMEM})", log,
                            kind="memory")
        line = _offending_line(log)
        text = c_source.split("\n")[line - 1].strip() if line and line <= c_source.count("\n") + 1 else None
        raise LoadError(f"the kernel's verifier rejected the program: {err}", log, line, text, kind="verifier")
    return Loaded(bpf, fn, prog_info(fn.fd), warnings)
