"""Ctrl-C for the command line: exit 130, and let a replay finish its frame.

``install()`` makes SIGINT raise ``Interrupted``: not a KeyboardInterrupt, which
click turns into "Aborted!" and status 1, and a BaseException, so that no
``except Exception`` on the way swallows it; ``main`` reports it and exits 130.
Within ``calling(fn)`` SIGINT calls ``fn`` instead (a replay stops after the frame
being run: runtime/engines/replay.py, ``Replay.interrupt``).
"""

from __future__ import annotations

import contextlib
import signal


class Interrupted(BaseException):
    """Ctrl-C (SIGINT)."""


def _raise(signum, frame):
    raise Interrupted()


def install() -> None:
    signal.signal(signal.SIGINT, _raise)


@contextlib.contextmanager
def calling(fn):
    """Within the block, SIGINT calls ``fn()``."""
    old = signal.signal(signal.SIGINT, lambda signum, frame: fn())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
