"""The few libbpf calls BCC 0.26 lacks, from the system's libbpf.so.1 (1.1) by ctypes.

BPF links (``link_create``, ``link_update``, ``link_detach``), the netlink XDP
calls with options (``xdp_attach``, ``xdp_detach``, ``xdp_query``), object ids
to fds, and object info. Every call returns what libbpf returns; a negative
result becomes ``OSError(errno, "<call>: <strerror>")``. The option structs
follow libbpf 1.1's include/bpf/bpf.h and libbpf.h (``sz`` first, so a newer
library reads only what we set).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

BPF_XDP = 37                          # enum bpf_attach_type
BPF_LINK_TYPE_XDP = 6                 # enum bpf_link_type
BPF_F_REPLACE = 1 << 2

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}

XDP_ATTACHED = {0: "none", 1: "native", 2: "generic", 3: "offload", 4: "multi"}


class LinkCreateOpts(ctypes.Structure):
    # struct bpf_link_create_opts: sz, flags, then a union whose largest member
    # (kprobe_multi: 2 u32 + 3 pointers) is 32 bytes
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("_union", ctypes.c_uint64 * 4)]


class LinkUpdateOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("old_prog_fd", ctypes.c_uint32)]


class XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int), ("_pad", ctypes.c_int)]


class XdpQueryOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("prog_id", ctypes.c_uint32), ("drv_prog_id", ctypes.c_uint32),
                ("hw_prog_id", ctypes.c_uint32), ("skb_prog_id", ctypes.c_uint32), ("attach_mode", ctypes.c_uint8),
                ("_pad", ctypes.c_uint8 * 7)]


class LinkInfo(ctypes.Structure):
    # struct bpf_link_info: type, id, prog_id, then (8-aligned) a union; for XDP its ifindex
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("prog_id", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32), ("u0", ctypes.c_uint32), ("u1", ctypes.c_uint32),
                ("_rest", ctypes.c_uint64 * 6)]


class ProgInfoHead(ctypes.Structure):
    # the start of struct bpf_prog_info, up to name
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16)]


class MapInfo(ctypes.Structure):
    # the start of struct bpf_map_info
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16)]


class LibbpfMissing(OSError):
    pass


@lru_cache(maxsize=1)
def lib():
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        so = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise LibbpfMissing(f"the system libbpf ({name}) cannot be loaded: {e}; install libbpf1") from None
    for fn in ("bpf_link_create", "bpf_link_update", "bpf_link_detach", "bpf_xdp_attach", "bpf_xdp_detach",
               "bpf_xdp_query", "bpf_prog_get_fd_by_id", "bpf_link_get_fd_by_id", "bpf_link_get_next_id",
               "bpf_obj_get_info_by_fd", "bpf_prog_get_next_id"):
        if not hasattr(so, fn):
            raise LibbpfMissing(f"the system libbpf ({name}) has no {fn}: libbpf 1.0 or newer is needed")
    return so


def _check(rc: int, call: str) -> int:
    if rc < 0:
        err = -rc if rc < -1 else ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")
    return rc


def link_create(prog_fd: int, ifindex: int, flags: int) -> int:
    opts = LinkCreateOpts(sz=ctypes.sizeof(LinkCreateOpts), flags=flags)
    return _check(lib().bpf_link_create(prog_fd, ifindex, BPF_XDP, ctypes.byref(opts)), "bpf_link_create")


def link_update(link_fd: int, new_prog_fd: int, old_prog_fd: int | None = None) -> None:
    opts = LinkUpdateOpts(sz=ctypes.sizeof(LinkUpdateOpts))
    if old_prog_fd is not None:
        opts.flags, opts.old_prog_fd = BPF_F_REPLACE, old_prog_fd
    _check(lib().bpf_link_update(link_fd, new_prog_fd, ctypes.byref(opts)), "bpf_link_update")


def link_detach(link_fd: int) -> None:
    _check(lib().bpf_link_detach(link_fd), "bpf_link_detach")


def xdp_attach(ifindex: int, prog_fd: int, flags: int, old_prog_fd: int | None = None) -> None:
    opts = XdpAttachOpts(sz=ctypes.sizeof(XdpAttachOpts), old_prog_fd=old_prog_fd if old_prog_fd is not None else 0)
    if old_prog_fd is not None:
        flags |= XDP_FLAGS_REPLACE
    _check(lib().bpf_xdp_attach(ifindex, prog_fd, flags, ctypes.byref(opts)), "bpf_xdp_attach")


def xdp_detach(ifindex: int, flags: int, old_prog_fd: int | None = None) -> None:
    opts = XdpAttachOpts(sz=ctypes.sizeof(XdpAttachOpts), old_prog_fd=old_prog_fd if old_prog_fd is not None else 0)
    if old_prog_fd is not None:
        flags |= XDP_FLAGS_REPLACE
    _check(lib().bpf_xdp_detach(ifindex, flags, ctypes.byref(opts)), "bpf_xdp_detach")


def xdp_query(ifindex: int) -> XdpQueryOpts:
    opts = XdpQueryOpts(sz=ctypes.sizeof(XdpQueryOpts))
    _check(lib().bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), "bpf_xdp_query")
    return opts


def prog_fd_by_id(prog_id: int) -> int:
    return _check(lib().bpf_prog_get_fd_by_id(ctypes.c_uint32(prog_id)), "bpf_prog_get_fd_by_id")


def link_fd_by_id(link_id: int) -> int:
    return _check(lib().bpf_link_get_fd_by_id(ctypes.c_uint32(link_id)), "bpf_link_get_fd_by_id")


def _info(fd: int, struct):
    info = struct()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)), "bpf_obj_get_info_by_fd")
    return info


def map_info(fd: int) -> MapInfo:
    return _info(fd, MapInfo)


MAP_TYPES = {"hash": 1, "array": 2, "percpu_hash": 5, "percpu_array": 6, "lru_hash": 9, "lru_percpu_hash": 10}


def map_create(bpf_type: str, name: str, key_size: int, value_size: int, max_entries: int) -> int:
    """A new map (flags 0, as BCC declares the statistics maps); its fd."""
    fn = lib().bpf_map_create
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return _check(fn(MAP_TYPES[bpf_type], name[:15].encode(), key_size, value_size, max_entries, None),
                  f"bpf_map_create {name}")


def obj_pin(fd: int, path: str) -> None:
    fn = lib().bpf_obj_pin
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_char_p], ctypes.c_int
    _check(fn(fd, os.fsencode(path)), f"bpf_obj_pin {path}")


def obj_get(path: str) -> int:
    """An fd of the object pinned at ``path`` (bpffs)."""
    fn = lib().bpf_obj_get
    fn.argtypes, fn.restype = [ctypes.c_char_p], ctypes.c_int
    return _check(fn(os.fsencode(path)), f"bpf_obj_get {path}")


def link_info(fd: int) -> LinkInfo:
    return _info(fd, LinkInfo)


def prog_head(fd: int) -> ProgInfoHead:
    return _info(fd, ProgInfoHead)


def _ids(getter: str):
    cur = ctypes.c_uint32(0)
    nxt = ctypes.c_uint32(0)
    f = getattr(lib(), getter)
    while f(cur, ctypes.byref(nxt)) == 0:
        yield nxt.value
        cur.value = nxt.value


def link_ids():
    return _ids("bpf_link_get_next_id")


def prog_ids():
    return _ids("bpf_prog_get_next_id")


def prog_name(prog_id: int) -> str:
    """The name of program ``prog_id`` ("" when it is gone)."""
    try:
        fd = prog_fd_by_id(prog_id)
    except OSError:
        return ""
    try:
        return prog_head(fd).name.decode(errors="replace")
    finally:
        os.close(fd)


def xdp_links() -> dict[int, list[tuple[int, int]]]:
    """ifindex -> [(link id, prog id)] of every XDP link of this network namespace's
    interfaces (links elsewhere have ifindexes of their own namespace: the caller
    checks the program id against bpf_xdp_query)."""
    out = {}
    for lid in link_ids():
        try:
            fd = link_fd_by_id(lid)
        except OSError:
            continue
        try:
            li = link_info(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        if li.type == BPF_LINK_TYPE_XDP:
            out.setdefault(li.u0, []).append((li.id, li.prog_id))
    return out


# ---- ring buffers: the ``struct ring_buffer`` BCC made (bcc.BPF._ringbuf_manager) ----

@lru_cache(maxsize=1)
def _lib_holding_gil():
    """The same library through ctypes.PyDLL: calls that keep the GIL. For
    ring_buffer__consume, whose callback is Python: the GIL is then held across a
    batch of records instead of released and taken again around each one (Python
    still switches threads every few ms inside the callbacks)."""
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    so = ctypes.PyDLL(name)
    so.ring_buffer__consume.argtypes = [ctypes.c_void_p]
    so.ring_buffer__consume.restype = ctypes.c_int
    return so


def ring_buffer_epoll_fd(rb: int) -> int:
    """The epoll fd of ring buffer ``rb``: readable when a record waits."""
    fn = lib().ring_buffer__epoll_fd
    fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_int
    return _check(fn(rb), "ring_buffer__epoll_fd")


def ring_buffer_consume(rb: int) -> int:
    """Every record waiting in ``rb``'s rings, to their callbacks, the GIL held;
    how many."""
    return _check(_lib_holding_gil().ring_buffer__consume(rb), "ring_buffer__consume")
