"""Signals of a running instance: what stops it, what reloads it.

``Signals(reload_on_hup)`` installs handlers for SIGINT, SIGTERM and SIGHUP that
only set flags and wake the run loop (``wait(timeout)``): the loop then stops
(detaching first) or reloads between two readings, never in the middle of one.
SIGHUP is a hangup (the terminal went away: stop) unless the instance runs from
a deployment config (``reload_on_hup``, as a service: systemd's ExecReload sends
it), where it reloads the config. A second SIGINT or SIGTERM while stopping
raises KeyboardInterrupt at once (the ``finally`` blocks still detach).
``restore()`` puts the previous handlers back.
"""

from __future__ import annotations

import signal
import threading

NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Signals:
    def __init__(self, reload_on_hup: bool = False):
        self.reload_on_hup = reload_on_hup
        self.wake = threading.Event()
        self.stop_by: str | None = None          # the signal that stops the instance
        self.reload = False
        self._old = {}

    def install(self) -> "Signals":
        for s in NAMES:
            self._old[s] = signal.signal(s, self._on)
        return self

    def _on(self, signum, frame) -> None:
        if signum == signal.SIGHUP and self.reload_on_hup:
            self.reload = True
        elif self.stop_by is not None and signum != signal.SIGHUP:
            raise KeyboardInterrupt()           # asked twice: stop now
        else:
            self.stop_by = NAMES[signum]
        self.wake.set()

    def stop(self, why: str) -> None:
        """Stop from within (``--duration``, an error of a thread)."""
        if self.stop_by is None:
            self.stop_by = why
        self.wake.set()

    def wait(self, timeout: float) -> None:
        self.wake.wait(timeout)
        self.wake.clear()

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
