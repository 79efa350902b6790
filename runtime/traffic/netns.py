"""Run the calling thread in a named network namespace (``ip netns add NAME``).

``setns(2)`` on ``/run/netns/NAME`` changes the namespace of the calling thread only:
the kernel resolves a live-frames test run's ingress ifindex in the namespace of the
thread that makes the syscall, so the generator's sending thread enters the sender's
namespace and comes back afterwards. ``name=None`` stays where the thread is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str | None):
    """``with in_netns("ns1"):`` this thread in network namespace ``ns1``, then back."""
    if name is None:
        yield
        return
    path = f"/run/netns/{name}"
    try:
        there = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise OSError(2, f"network namespace '{name}' does not exist ({path} is missing; ip netns list)") from None
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(there, f"network namespace '{name}'")
        try:
            yield
        finally:
            _setns(back, "the thread's own network namespace")
    finally:
        os.close(there)
        os.close(back)
