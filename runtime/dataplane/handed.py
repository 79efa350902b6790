"""A program loaded by another process and handed over by file descriptors.

A running instance cannot compile in its own process (LLVM ends the process on some
back-end errors, and a process with threads cannot protect itself by forking:
fatal_exit.py). So the next program is compiled and loaded by a child
(runtime/deploy/verify.py), which sends the instance, over a Unix socket
(``SCM_RIGHTS``), the fd of every program it loaded and of every map, with each map's
name, type, key and value size and entries; then it exits. The kernel keeps programs
and maps while a process holds an fd of them, so they are the instance's from then on.

``send(sock, loaded)`` is the child's half, ``receive(sock)`` the instance's: a
``Loaded`` (loader.py) whose ``bpf`` is an ``FdBPF``: the few things of a bcc.BPF the
runtime uses (``bpf[name]`` tables with ``Key``/``Leaf`` types, lookups, updates,
deletes, ``keys()``, per-CPU values; ring buffers through libbcc's ring buffer
calls), over the fds, so that ProgramMaps (maps.py), sets.py and the pin check work on
it unchanged.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
from dataclasses import dataclass

from . import libbpf as L
from .loader import Loaded, prog_info

MAX_FDS = 250                          # SCM_RIGHTS takes at most 253 fds a message
PERCPU_TYPES = {5, 6, 10}              # BPF_MAP_TYPE_PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
ARRAY_TYPES = {2, 6}                   # ARRAY, PERCPU_ARRAY: int keys


def possible_cpus() -> int:
    """The kernel's possible CPUs (a per-CPU map copies a value for each)."""
    text = open("/sys/devices/system/cpu/possible").read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


@dataclass
class MapDesc:
    name: str
    type: int
    key_size: int
    value_size: int                    # one value (a CPU's, for per-CPU maps)
    max_entries: int


# ---- the child's half ---------------------------------------------------------------------

def _libbcc():
    """libbcc's table calls, with the types BCC's Python module does not declare for all."""
    from bcc.libbcc import lib

    for fn, res in (("bpf_num_tables", ctypes.c_ulonglong), ("bpf_table_name", ctypes.c_char_p),
                    ("bpf_table_fd_id", ctypes.c_int), ("bpf_table_key_size_id", ctypes.c_size_t),
                    ("bpf_table_leaf_size_id", ctypes.c_size_t), ("bpf_table_type_id", ctypes.c_int),
                    ("bpf_table_max_entries_id", ctypes.c_ulonglong)):
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = [ctypes.c_void_p] if fn == "bpf_num_tables" else [ctypes.c_void_p, ctypes.c_ulonglong]
    return lib


def _tables(bpf) -> list[MapDesc]:
    lib = _libbcc()
    m = bpf.module
    return [MapDesc(lib.bpf_table_name(m, i).decode(), lib.bpf_table_type_id(m, i), lib.bpf_table_key_size_id(m, i),
                    lib.bpf_table_leaf_size_id(m, i), lib.bpf_table_max_entries_id(m, i))
            for i in range(lib.bpf_num_tables(m))]


def send(sock: socket.socket, loaded: Loaded, stage_fds: list[int]) -> None:
    """Send the programs (the entry point first) and every map of ``loaded``."""
    lib = _libbcc()
    maps = _tables(loaded.bpf)
    m = loaded.bpf.module
    map_fds = [lib.bpf_table_fd_id(m, i) for i in range(len(maps))]
    fds = [loaded.fd, *stage_fds, *map_fds]
    if len(fds) > MAX_FDS:
        raise ValueError(f"{len(fds)} programs and maps: more than one message takes ({MAX_FDS})")
    head = {"programs": 1 + len(stage_fds), "maps": [d.__dict__ for d in maps], "warnings": loaded.warnings or []}
    data = json.dumps(head).encode()
    sock.sendall(len(data).to_bytes(4, "little"))
    socket.send_fds(sock, [data], fds)
    sock.recv(1)                       # the instance has them: the child may go


# ---- the instance's half --------------------------------------------------------------------

def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the loading process went away")
        buf += chunk
    return buf


def receive(sock: socket.socket) -> Loaded:
    n = int.from_bytes(_recv_exact(sock, 4), "little")
    data, fds, _, _ = socket.recv_fds(sock, n, MAX_FDS)
    while len(data) < n:
        data += _recv_exact(sock, n - len(data))
    sock.sendall(b"1")
    head = json.loads(data)
    nprog = head["programs"]
    descs = [MapDesc(**d) for d in head["maps"]]
    if len(fds) != nprog + len(descs):
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"{len(fds)} fds for {nprog} programs and {len(descs)} maps")
    bpf = FdBPF(fds[:nprog], {d.name: FdTable(d, fd) for d, fd in zip(descs, fds[nprog:])})
    infos = [prog_info(fd) for fd in fds[:nprog]]
    return Loaded(bpf, _Fn(fds[0]), infos[0], head["warnings"], infos)


@dataclass
class _Fn:
    fd: int


class FdTable:
    """A map by its fd, as much of a bcc table as the runtime uses."""

    def __init__(self, d: MapDesc, fd: int):
        self.name, self.map_fd, self.max_entries, self.type = d.name, fd, d.max_entries, d.type
        self.Key = ctypes.c_int if d.type in ARRAY_TYPES else ctypes.c_ubyte * max(1, d.key_size)
        if d.type in PERCPU_TYPES:
            self.sLeaf = ctypes.c_uint64 if d.value_size == 8 else ctypes.c_ubyte * ((d.value_size + 7) // 8 * 8)
            self.Leaf = self.sLeaf * possible_cpus()
        else:
            self.Leaf = ctypes.c_ubyte * max(1, d.value_size)
        self._so = L.lib()

    def _key(self, key):
        return key if isinstance(key, ctypes._SimpleCData) or isinstance(key, ctypes.Array) else self.Key(key)

    def __getitem__(self, key):
        leaf = self.Leaf()
        k = self._key(key)
        if self._so.bpf_map_lookup_elem(self.map_fd, ctypes.byref(k), ctypes.byref(leaf)) != 0:
            raise KeyError(key)
        return leaf

    getvalue = __getitem__

    def __setitem__(self, key, leaf) -> None:
        k = self._key(key)
        if self._so.bpf_map_update_elem(self.map_fd, ctypes.byref(k), ctypes.byref(leaf), 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"updating {self.name}: {os.strerror(err)}")

    def __delitem__(self, key) -> None:
        k = self._key(key)
        if self._so.bpf_map_delete_elem(self.map_fd, ctypes.byref(k)) != 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                raise KeyError(key)
            raise OSError(err, f"deleting from {self.name}: {os.strerror(err)}")

    def keys(self):
        cur, nxt = None, self.Key()
        while True:
            prev = ctypes.byref(cur) if cur is not None else None
            if self._so.bpf_map_get_next_key(self.map_fd, prev, ctypes.byref(nxt)) != 0:
                return
            yield nxt
            cur, nxt = nxt, self.Key()


class FdBPF:
    """The handed-over program's maps by name, its ring buffers, and ``cleanup()``."""

    def __init__(self, prog_fds: list[int], tables: dict[str, FdTable]):
        self.prog_fds, self.tables = prog_fds, tables
        self._ringbuf_manager = None

    def __getitem__(self, name: str) -> FdTable:
        return self.tables[name]

    def _open_ring_buffer(self, map_fd: int, fn, ctx=None) -> None:
        from bcc.libbcc import lib

        if not self._ringbuf_manager:
            self._ringbuf_manager = lib.bpf_new_ringbuf(map_fd, fn, ctx)
            if not self._ringbuf_manager:
                raise OSError(ctypes.get_errno(), "ring_buffer__new failed")
        elif lib.bpf_add_ringbuf(self._ringbuf_manager, map_fd, fn, ctx) < 0:
            raise OSError(ctypes.get_errno(), "ring_buffer__add failed")

    def cleanup(self) -> None:
        from bcc.libbcc import lib

        if self._ringbuf_manager:
            lib.bpf_free_ringbuf(self._ringbuf_manager)
            self._ringbuf_manager = None
        for fd in self.prog_fds + [t.map_fd for t in self.tables.values()]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.prog_fds, self.tables = [], {}
