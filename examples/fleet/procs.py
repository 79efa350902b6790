"""The fleet's long-running processes: xdpmon instances and Prometheus servers.

``Proc(what, ns, args, log)`` starts ``args`` inside network namespace ``ns`` (``ip netns
exec``, which execs the command: the pid is the command's), its output to the file
``log``, in a session of its own (a Ctrl-C at the terminal reaches the fleet, which stops
its processes in order), and with PR_SET_PDEATHSIG so that it gets SIGTERM should the
fleet's process die without stopping it (xdpmon then detaches; Prometheus shuts down).
``stop()`` sends SIGTERM to that pid, then SIGKILL after ``timeout``; nothing is signalled
by name.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcError(RuntimeError):
    """A process that exited or did not get ready; ``str()`` says why, with its log's tail."""


class Proc:
    def __init__(self, what: str, ns: str, args: list[str], log: Path, *, env: dict | None = None,
                 cwd: str | None = None):
        self.what, self.ns, self.log = what, ns, Path(log)
        self.args = args
        with open(self.log, "wb") as out:
            self.p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
                                      preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failed(self, why: str) -> ProcError:
        return ProcError(f"{self.what} {why}; the end of its log ({self.log}):\n{self.tail()}")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first match of ``pattern`` in the log, waiting up to ``timeout`` s; an error
        (with the log) if the process exits or the time runs out first."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.log.read_text(errors="replace"))
            if m:
                return m
            if not self.alive():
                raise self.failed(f"exited with status {self.p.returncode}")
            if time.monotonic() > end:
                raise self.failed(f"did not log /{pattern}/ within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; the exit status."""
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
            except ProcessLookupError:
                pass
        return self.p.returncode
