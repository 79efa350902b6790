"""Outlive LLVM ending the process, so that a failed compile is never silent.

LLVM reports some errors of its BPF back end (the 512-byte stack limit, a call
it cannot compile, ...) by printing them and calling ``exit(1)``, from inside the
one BCC call that compiles the C: no Python exception is raised, nothing the
caller would have said gets said, and the message itself went to the file the
loader captures stderr into. ``fork_watched()`` keeps a process that can still
speak: it forks; the child returns and carries on as the program (it compiles,
and if the compile returns, it tells the parent so and goes on with the whole
command); the parent only waits. If the child dies before saying the compile
returned, the parent calls ``on_death(wait_status)`` (which reads the captured
log and reports it); otherwise it exits with the child's status, or dies of the
child's signal, so callers see exactly what they would have seen.

While it waits the parent forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the
child, except a SIGINT or SIGQUIT from the terminal (Ctrl-C, Ctrl-\\), which
the child, in the same process group, receives itself. The child gets SIGTERM
if the parent dies (``PR_SET_PDEATHSIG``). Meant for command-line processes:
the caller's process stays behind as the waiting parent for the rest of its
life; its memory is shared copy-on-write and it does nothing but wait.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable, NoReturn

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT)    # the terminal signals the whole group
SI_KERNEL = 0x80                                    # si_code of a signal the kernel sent (a tty's)
PR_SET_PDEATHSIG = 1


def fork_watched(on_death: Callable[[int], NoReturn]) -> Callable[[], None]:
    """Fork; in the child, return ``passed``: call it once the part that may end
    the process is over. The parent never returns (see the module docstring)."""
    sys.stdout.flush()
    sys.stderr.flush()
    waited = {signal.SIGCHLD, *FORWARDED}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:             # the parent died before prctl
            os._exit(1)

        def passed() -> None:
            os.write(w, b"1")
            os.close(w)
        return passed
    os.close(w)
    try:
        _wait(pid, r, waited, on_death)
    finally:                  # the parent never goes back to the program, whatever happens
        os._exit(1)


def _wait(pid: int, r: int, waited: set, on_death: Callable[[int], NoReturn]) -> NoReturn:
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                break
            continue                             # stopped or continued, not gone
        if info.si_signo in FROM_TERMINAL and info.si_code == SI_KERNEL:
            continue
        try:
            os.kill(pid, info.si_signo)
        except ProcessLookupError:
            pass
    os.set_blocking(r, False)
    try:
        passed = os.read(r, 1) == b"1"
    except BlockingIOError:
        passed = False
    if not passed:
        try:
            on_death(status)
        except BaseException as e:
            os.write(2, f"xdpmon: the process compiling the program ended, and saying why failed: {e!r}\n"
                     .encode())
        os._exit(1)
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    sig = os.WTERMSIG(status)
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)
