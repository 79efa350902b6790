"""A BPF map's entries, read in bounded chunks.

``read_entries(fd, key_size, value_size)`` returns every (key, value) pair a map
holds, as bytes. It asks the kernel for them with ``BPF_MAP_LOOKUP_BATCH``, one
chunk of at most ``chunk_entries()`` entries (about ``CHUNK_BYTES``) per call, so
reading a map costs memory for one chunk and for the entries present -- never
for the map's declared size (BCC's ``items_lookup_batch`` allocates room for
``max_entries``: 384 MiB of buffers for a 16 Mi-entry map holding three keys).
Map types without batch operations (the kernel says EINVAL or ENOTSUPP on the
first call; e.g. device maps) are walked with ``BPF_MAP_GET_NEXT_KEY`` and one
lookup per key, which is as bounded but costs two calls per entry.

Hash maps (plain and LRU) and arrays all have batch operations on the kernels
xdpmon supports; an array's entries come in index order. ``value_size`` is the
size of one value as the kernel copies it out: for per-CPU maps, the value
rounded up to 8 bytes times the possible CPUs.

The calls are BCC's libbpf wrappers (``bcc.libbcc.lib``), the library that
loads the program.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Iterator

from runtime.abi.entries import Entries

CHUNK_BYTES = 1 << 20            # keys and values asked for per call, at most (about)
MIN_CHUNK = 64                   # entries per call, at least
MAX_CHUNK = 1 << 16
ENOTSUPP = 524                   # the kernel's internal "not supported", as bpf(2) returns it
_NO_BATCH = {errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP}


def _lib():
    from bcc.libbcc import lib
    return lib


def chunk_entries(key_size: int, value_size: int) -> int:
    return max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_BYTES // max(1, key_size + value_size)))


class BatchUnsupported(OSError):
    """The kernel has no batch lookup for this map's type."""


def _strerror(err: int) -> str:
    return "not supported for this map type" if err == ENOTSUPP else os.strerror(err)


def _errno(rc: int) -> int:
    # libbpf returns -errno (and sets errno); older wrappers return -1 and set errno
    return -rc if rc < -1 else ctypes.get_errno()


def lookup_batches(fd: int, key_size: int, value_size: int, chunk: int | None = None
                   ) -> Iterator[list[tuple[bytes, bytes]]]:
    """The map's entries, one list per BPF_MAP_LOOKUP_BATCH call. Raises
    BatchUnsupported before yielding anything when the map type has no batch
    lookup; OSError on any other failure."""
    for kb, vb in _batches(fd, key_size, value_size, chunk):
        yield [(kb[i * key_size:(i + 1) * key_size], vb[i * value_size:(i + 1) * value_size])
               for i in range(len(vb) // value_size)]


def _batches(fd: int, key_size: int, value_size: int, chunk: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(keys, values) byte strings, one pair per BPF_MAP_LOOKUP_BATCH call."""
    lib = _lib()
    n = chunk or chunk_entries(key_size, value_size)
    keys = (ctypes.c_ubyte * (n * key_size))()
    values = (ctypes.c_ubyte * (n * value_size))()
    # The batch position: a bucket index (hash maps) or the last key (other maps)
    words = max(2, -(-key_size // 4))
    token_in, token_out = (ctypes.c_uint32 * words)(), (ctypes.c_uint32 * words)()
    first = True
    while True:
        count = ctypes.c_uint32(n)
        rc = lib.bpf_lookup_batch(fd, None if first else token_in, token_out, keys, values, ctypes.byref(count))
        err = _errno(rc) if rc else 0
        if err == errno.ENOSPC and count.value == 0 and n < MAX_CHUNK * 16:
            # one hash bucket holds more entries than a chunk: ask for more at once
            n *= 4
            keys = (ctypes.c_ubyte * (n * key_size))()
            values = (ctypes.c_ubyte * (n * value_size))()
            continue
        if err and err != errno.ENOENT:
            if first and err in _NO_BATCH:
                raise BatchUnsupported(err, f"BPF_MAP_LOOKUP_BATCH: {_strerror(err)}")
            raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {_strerror(err)}")
        got = count.value
        if got:
            yield ctypes.string_at(keys, got * key_size), ctypes.string_at(values, got * value_size)
        if err == errno.ENOENT or got == 0:      # the end (or nothing more to be had)
            return
        ctypes.memmove(token_in, token_out, ctypes.sizeof(token_in))
        first = False


def walk_keys(fd: int, key_size: int, value_size: int) -> Iterator[tuple[bytes, bytes]]:
    """The map's entries by BPF_MAP_GET_NEXT_KEY and one lookup each (entries
    deleted meanwhile are skipped)."""
    lib = _lib()
    key, nxt = (ctypes.c_ubyte * key_size)(), (ctypes.c_ubyte * key_size)()
    value = (ctypes.c_ubyte * value_size)()
    rc = lib.bpf_get_first_key(fd, nxt, key_size)
    while rc == 0:
        ctypes.memmove(key, nxt, key_size)
        if lib.bpf_lookup_elem(fd, key, value) == 0:
            yield bytes(key), bytes(value)
        rc = lib.bpf_get_next_key(fd, key, nxt)


def entry_batches(fd: int, key_size: int, value_size: int) -> Iterator[Entries]:
    """The map's entries as one ``Entries`` per BPF_MAP_LOOKUP_BATCH call (at most
    ``chunk_entries()`` each, but one hash bucket is never split); a map type without
    batch lookup: walked, in chunks of the same size."""
    try:
        for kb, vb in _batches(fd, key_size, value_size):
            yield Entries(kb, vb, key_size, value_size)
        return
    except BatchUnsupported:
        pass
    n, chunk = chunk_entries(key_size, value_size), []
    for pair in walk_keys(fd, key_size, value_size):
        chunk.append(pair)
        if len(chunk) == n:
            yield Entries.of(chunk, key_size, value_size)
            chunk = []
    if chunk:
        yield Entries.of(chunk, key_size, value_size)


def read_columns(fd: int, key_size: int, value_size: int) -> Entries:
    """Every entry of the map as an ``Entries`` (keys and values end to end): no
    Python object per entry; for maps of a million entries."""
    parts = list(entry_batches(fd, key_size, value_size))
    return Entries(b"".join(e.key_bytes for e in parts), b"".join(e.value_bytes for e in parts), key_size, value_size)


def read_entries(fd: int, key_size: int, value_size: int) -> list[tuple[bytes, bytes]]:
    """Every entry of the map, by batches where the kernel has them."""
    out: list[tuple[bytes, bytes]] = []
    try:
        for chunk in lookup_batches(fd, key_size, value_size):
            out += chunk
    except BatchUnsupported:
        return list(walk_keys(fd, key_size, value_size))
    return out
