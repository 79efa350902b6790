"""Why a program did not load, from what BCC printed.

BCC reports most failures only on stderr (the loader captures it): clang's
errors, the map the kernel refused and why, the verifier's log, LLVM's last
words before it ends the process. Each reader here turns one stage's failure
into a ``LoadError``: a one-line ``reason`` (the kernel's or compiler's own verdict
where there is one), the ``kind`` of failure (``KINDS``), whether the generated
program is at fault (``bug``: a bug of xdpmon's compiler, never for a lack of
memory or permission), the log, and the generated C line a verifier rejection
points at.
"""

from __future__ import annotations

import errno
import os
import re
import signal

# What can stop a load, and whether the generated program is then at fault.
KINDS = {
    "compile": True,          # clang: the generated C does not compile
    "backend": True,          # LLVM's BPF back end cannot compile it (e.g. the 512-byte stack)
    "verifier": True,         # the kernel's verifier rejects the program
    "too_big": False,         # E2BIG: more than the kernel takes (maps per program, verifier budget)
    "no_memory": False,       # ENOMEM: not enough memory for a map or the program
    "not_permitted": False,   # EPERM: not root, or the capabilities are missing
    "unavailable": False,     # no BCC, not root
    "other": False,
}


class LoadError(RuntimeError):
    """``reason`` (the message) is one line; ``log`` is what BCC printed."""

    def __init__(self, message: str, log: str = "", c_line: int | None = None, c_text: str | None = None,
                 kind: str = "other", map_name: str | None = None):
        super().__init__(message)
        self.reason = message
        self.log = log
        self.c_line = c_line
        self.c_text = c_text
        self.kind = kind
        self.bug = KINDS[kind]
        self.map_name = map_name      # the map the kernel refused, if it was a map



_C_LINE = re.compile(r"^; (.*) @ main\.c:(\d+)$", re.M)
_VERIFIER_STEP = re.compile(r"^(\d+: |from \d+ to \d+: |; )")
_CLANG_ERROR = re.compile(r"^(?:/virtual/)?main\.c:(\d+):(\d+): (?:fatal )?error: (.*)$", re.M)
# LLVM's diagnostics and fatal errors, printed just before it ends the process.
_LLVM_DIAG = re.compile(r"^error: (?:/virtual/)?main\.c:\d+:\d+: in function [^:]*: (.*)$", re.M)
_LLVM_FATAL = re.compile(r"^LLVM ERROR: (.*)$", re.M)
_MAP_FAILED = re.compile(r"^could not open bpf map: (\S+?),? error: (.*)$", re.M)
_ERRNO_BY_TEXT = {os.strerror(n): n for n in (errno.EPERM, errno.EACCES, errno.ENOMEM, errno.E2BIG,
                                              errno.EINVAL, errno.ENOSPC, errno.EFAULT, errno.EBUSY)}
_KIND_BY_ERRNO = {errno.E2BIG: "too_big", errno.ENOMEM: "no_memory", errno.EPERM: "not_permitted"}
_PERMISSION = ("loading needs root with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN); "
               "replay --engine reference needs none")


def _offending_line(log: str, c_source: str) -> tuple[int | None, str | None]:
    """The generated C line the verifier stopped at. Its log quotes the source line
    (``; TEXT @ main.c:N``) with N counted in BCC's rewritten C, which has lines of its
    own before ours: the quoted text is looked up in ours, nearest to N."""
    found = _C_LINE.findall(log)
    if not found:
        return None, None
    text, n = found[-1][0].strip(), int(found[-1][1])
    ours = [i for i, line in enumerate(c_source.split("\n"), 1) if line.strip() == text]
    if not ours:
        return None, text
    return min(ours, key=lambda i: abs(i - n)), text


def _c_text(c_source: str, line: int | None) -> str | None:
    lines = c_source.split("\n")
    return lines[line - 1].strip() if line and line <= len(lines) else None


def errno_of(text: str) -> int | None:
    if "Need super-user privileges" in text:         # BCC's words for EPERM
        return errno.EPERM
    return next((n for t, n in _ERRNO_BY_TEXT.items() if text.endswith(t)), None)


def _errno_name(n: int) -> str:
    return errno.errorcode.get(n, str(n))


def _verdict(log: str) -> str | None:
    """What the verifier said last: its lines after the last instruction it walked and
    before its statistics ("processed N insns ..."), BCC's own lines left out."""
    lines = [line.strip() for line in log.split("\n")]
    end = max((i for i, line in enumerate(lines) if line.startswith("processed ")), default=len(lines))
    start = max((i + 1 for i, line in enumerate(lines[:end]) if _VERIFIER_STEP.match(line)), default=0)
    said = [line for line in lines[start:end] if line and not line.startswith(("bpf: ", "HINT:", "-- "))]
    return "; ".join(said) or None


def compile_failure(log: str, c_source: str) -> LoadError:
    """Why ``BPF(text=...)`` raised: a map the kernel refused, or clang's error."""
    m = _MAP_FAILED.search(log)
    if m:
        name, why = m.group(1), m.group(2).strip()
        n = errno_of(why)
        kind = _KIND_BY_ERRNO.get(n, "other")
        if kind == "no_memory":
            reason = f"not enough memory: the kernel could not allocate BPF map {name} (ENOMEM)"
        elif kind == "not_permitted":
            reason = f"the kernel does not permit creating BPF map {name} (EPERM): {_PERMISSION}"
        elif kind == "too_big":
            reason = f"the kernel refused BPF map {name} as too big (E2BIG)"
        else:
            reason = f"the kernel refused BPF map {name}: {why}"
        return LoadError(reason, log, kind=kind, map_name=name)
    m = _CLANG_ERROR.search(log)
    if m:
        line = int(m.group(1))
        return LoadError(f"the generated C did not compile: main.c:{line}:{m.group(2)}: {m.group(3)}", log,
                         line, _c_text(c_source, line), kind="compile")
    return LoadError("the generated C did not compile (BCC gave no reason; its log is below)", log, kind="compile")


def program_failure(message: str, log: str, c_source: str) -> LoadError:
    """Why ``load_func`` raised: the kernel refused the program."""
    n = errno_of(message)
    verdict = _verdict(log)
    said = f": {verdict}" if verdict else ""
    if n == errno.EPERM:
        return LoadError(f"the kernel does not permit loading the program (EPERM): {_PERMISSION}", log,
                         kind="not_permitted")
    if n == errno.E2BIG:
        return LoadError(f"the program is more than the kernel takes (E2BIG){said}", log, kind="too_big")
    if n == errno.ENOMEM:
        return LoadError(f"not enough memory to load the program (ENOMEM){said}", log, kind="no_memory")
    line, text = _offending_line(log, c_source)
    code = f" ({_errno_name(n)})" if n else ""
    return LoadError(f"the kernel's verifier rejected the program{code}{said}", log, line, text,
                     kind="verifier")


def fatal_failure(log: str, status: int) -> LoadError:
    """Why the process compiling the C ended (wait ``status``): LLVM's last words."""
    m = _LLVM_DIAG.search(log)
    if m:      # its line is in BCC's rewritten C, not the generated one: left to the log
        return LoadError(f"LLVM's BPF back end cannot compile the generated C: {m.group(1).strip()}", log,
                         kind="backend")
    m = _LLVM_FATAL.search(log)
    if m:
        return LoadError(f"LLVM's BPF back end failed: {m.group(1).strip()}", log, kind="backend")
    if os.WIFSIGNALED(status):
        how = f"died of {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        how = f"exited with status {os.WEXITSTATUS(status)}"
    return LoadError(f"compiling the generated C ended the process ({how}) without saying why", log,
                     kind="backend")
