"""Events to a file: appended whole lines, rotated by size, reopened when moved.

``EventFile(path, max_bytes=None, keep=5)`` opens ``path`` for appending (``O_APPEND``,
created with mode 0640: events name addresses) and writes each line with one
``write(2)`` call, so a line is never split between two writers of the file, and
nothing waits in a buffer of this process. A line the disk has no room for is not
left half written: what a short write put in the file is cut off again (``ftruncate``
to where the line began, when nothing else wrote meanwhile), and the error raised.

Rotation (``max_bytes``): before a line that would take the file past ``max_bytes``,
``path.(keep-1)`` is renamed to ``path.keep``, ..., ``path`` to ``path.1`` (the oldest,
``path.keep``, is replaced: at most ``keep`` rotated files), and a new ``path`` is
opened. A file holds at most ``max_bytes`` unless one line alone is longer (it then
has a file to itself). The size is what this process wrote since the open, checked
against the file's own before rotating (a file truncated by someone else, as
logrotate's ``copytruncate`` does, is not rotated early). A rename that fails is told
(``warn``) and the line written to the current file: nothing is lost, the file grows.

Moved or removed (logrotate's default: rename, then ``create``): ``check()`` (every
interval of a running instance) compares the file open with what ``path`` names now
and opens ``path`` again when they differ; ``reopen()`` does it at once (SIGHUP,
``ctl reload``). Lines written meanwhile are in the moved file.
"""

from __future__ import annotations

import os
from typing import Callable

from runtime.abi.event_output import DEFAULT_KEEP

FILE_MODE = 0o640


class EventFile:
    def __init__(self, path: str, max_bytes: int | None = None, keep: int = DEFAULT_KEEP,
                 warn: Callable[[str, str | None], None] | None = None):
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"a rotated events file holds at least 1 byte, not {max_bytes}")
        if keep < 1:
            raise ValueError(f"rotation keeps at least 1 file, not {keep}")
        self.path = str(path)
        self.name = self.path
        self.max_bytes, self.keep = max_bytes, keep
        self.rotations = 0
        self._warn = warn or (lambda key, message: None)
        self._fd: int | None = None
        self._id: tuple[int, int] | None = None
        self.size = 0
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        st = os.fstat(fd)
        self._fd, self._id, self.size = fd, (st.st_dev, st.st_ino), st.st_size

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    # ---- writing -------------------------------------------------------------------------------
    def write(self, line: str, event: dict | None = None) -> None:
        data = line.encode()
        if self._fd is None:                # a reopen failed earlier: try again
            self._open()
        if self.max_bytes is not None and self.size and self.size + len(data) > self.max_bytes:
            self.size = os.fstat(self._fd).st_size
            if self.size and self.size + len(data) > self.max_bytes:
                self._rotate()
        self._write_whole(data)

    def _write_whole(self, data: bytes) -> None:
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                n = os.write(self._fd, view[done:])
                if n == 0:
                    raise OSError(28, os.strerror(28))      # ENOSPC: no progress
                done += n
        except OSError:
            if done:
                self._cut(done)
            raise
        self.size += len(data)

    def _cut(self, written: int) -> None:
        """Take a half-written line out again, when nothing else wrote meanwhile."""
        try:
            if os.fstat(self._fd).st_size == self.size + written:
                os.ftruncate(self._fd, self.size)
        except OSError:
            pass

    def _rotate(self) -> None:
        if self._names() != self._id:       # moved away already: a new file, nothing to rotate
            self.reopen()
            return
        try:
            for i in range(self.keep - 1, 0, -1):
                older = f"{self.path}.{i}"
                if os.path.lexists(older):
                    os.replace(older, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        except OSError as e:
            self._warn("rotate", f"cannot rotate {self.path}: {e.strerror or e}; writing on to it past "
                                 f"{self.max_bytes:,} bytes")
            return
        self._warn("rotate", None)
        self.rotations += 1
        self._close()
        self._open()

    # ---- the file moved --------------------------------------------------------------------------
    def check(self) -> None:
        """Open ``path`` again if it no longer names the file open (moved or removed)."""
        if self._fd is None or self._names() != self._id:
            self.reopen()

    def _names(self) -> tuple[int, int] | None:
        """The file ``path`` names now (None: none)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def reopen(self) -> None:
        self._close()
        self._open()

    def close(self) -> None:
        self._close()
