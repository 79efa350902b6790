"""An instance's directory in bpffs, where the maps that outlive a program are pinned.

``PinDir.open(name)`` makes ``<bpffs>/xdpmon/<name>/``. The bpffs is ``XDPMON_BPFFS``
when set, else ``/sys/fs/bpf`` when a bpffs is mounted there, else one this process
mounts at ``<run dir>/bpffs`` (``/run/xdpmon/bpffs``; many machines and every
``ip netns exec`` have no bpffs at /sys/fs/bpf). The directory belongs to the
instance of that name, which holds the name's control socket (runtime/control/socket.py):
pins found there at start were left by an instance that did not stop (SIGKILL, a
crash) and are removed, with a note.

``check(bpf, pins)`` compares every pinned map a loaded program opened with what the
program declares (type, key and value size, entries): BCC opens whatever is pinned at
a path without comparing (compiler/pins.py puts the layout's fingerprint in the name,
so a difference means a pin written by something else). ``unpin(names)`` removes pins
no program uses any more; ``remove()`` removes the directory (the instance's last
step: the kernel frees each map when its last program goes), and the bpffs mount this
process made once nothing else is pinned in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runtime.control.socket import check_name, run_dir
from runtime.dataplane import libbpf as L

BPFFS_ENV = "XDPMON_BPFFS"
SYSTEM_BPFFS = "/sys/fs/bpf"


class PinError(RuntimeError):
    """A pin directory that cannot be made or a pinned map that does not fit; ``str()`` says why."""


def is_bpffs(path: str) -> bool:
    """Whether ``path`` is the mount point of a bpffs (this mount namespace's view)."""
    p = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == p and line.split()[2] == "bpf" for line in f if len(line.split()) > 2)
    except OSError:
        return False


def _bpffs() -> tuple[Path, bool]:
    """(the bpffs to use, whether this process mounted it)."""
    env = os.environ.get(BPFFS_ENV)
    if env:
        if not is_bpffs(env):
            raise PinError(f"{BPFFS_ENV}={env} is not a bpffs mount point (mount -t bpf bpf {env})")
        return Path(env), False
    if is_bpffs(SYSTEM_BPFFS):
        return Path(SYSTEM_BPFFS), False
    own = run_dir() / "bpffs"
    if is_bpffs(str(own)):
        return own, False
    own.mkdir(parents=True, exist_ok=True, mode=0o700)
    r = subprocess.run(["mount", "-t", "bpf", "bpf", str(own)], capture_output=True, text=True)
    if r.returncode != 0:
        raise PinError(f"no bpffs at {SYSTEM_BPFFS} and mounting one at {own} failed: "
                       f"{(r.stderr or r.stdout).strip()} (a running instance keeps its maps pinned in bpffs)")
    return own, True


def _kernels_own(p: Path) -> bool:
    """What a new bpffs holds of its own (``maps.debug``, ``progs.debug``: the kernel's
    preloaded iterators), which does not keep it from being unmounted."""
    return p.is_file() and p.suffix == ".debug"


@contextlib.contextmanager
def _mount_lock():
    """Instances of one run directory, one at a time around the mount they share."""
    d = run_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(d / "bpffs.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@dataclass
class PinDir:
    name: str
    path: Path
    bpffs: Path
    mounted: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, name: str) -> "PinDir":
        check_name(name)
        with _mount_lock():
            base, mounted = _bpffs()
            path = base / "xdpmon" / name
            pd = cls(name, path, base, mounted)
            pd._make()
        return pd

    def _make(self) -> None:
        path, name = self.path, self.name
        if path.exists():
            stale = sorted(p.name for p in path.iterdir())
            if stale:
                self._remove_files(stale)
                self.notes.append(f"removed {len(stale)} pinned map(s) in {path} left by an instance named "
                                  f"'{name}' that did not stop cleanly")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)

    # ---- what is pinned ------------------------------------------------------------------
    def pinned(self) -> set[str]:
        try:
            return {p.name for p in self.path.iterdir()}
        except FileNotFoundError:
            return set()

    def check(self, bpf, pins: dict[str, str]) -> None:
        """Every map of ``bpf`` (a loaded bcc.BPF) pinned per ``pins`` is the map the
        program declares; PinError naming the first that is not."""
        for name, pin in pins.items():
            try:
                t = bpf[name]
            except KeyError:
                continue
            info = L.map_info(t.map_fd)
            leaf = getattr(t, "sLeaf", t.Leaf)
            want = (ctypes.sizeof(t.Key), ctypes.sizeof(leaf), t.max_entries)
            have = (info.key_size, info.value_size, info.max_entries)
            if want != have:
                raise PinError(f"the map pinned at {self.path / pin} has key, value and entries {have}, the program "
                               f"declares {want}: it was pinned by something else; remove it")

    def unpin(self, pins) -> list[str]:
        """Remove these pins (the maps live on while a program uses them); those removed."""
        return self._remove_files(sorted(set(pins) & self.pinned()))

    def _remove_files(self, names) -> list[str]:
        done = []
        for n in names:
            try:
                (self.path / n).unlink()
                done.append(n)
            except FileNotFoundError:
                pass
        return done

    def remove(self) -> None:
        """Remove every pin and the directory; unmount the bpffs this process mounted
        when nothing else is left in it."""
        with _mount_lock():          # no other instance makes its directory meanwhile
            self._remove_files(sorted(self.pinned()))
            for d in (self.path, self.path.parent):
                try:
                    d.rmdir()
                except OSError:
                    break
            if self.mounted and not [p for p in self.bpffs.iterdir() if not _kernels_own(p)]:
                subprocess.run(["umount", str(self.bpffs)], capture_output=True)
                try:
                    self.bpffs.rmdir()
                except OSError:
                    pass
