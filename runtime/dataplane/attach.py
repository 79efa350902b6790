"""Attaching one loaded program to interfaces, and taking it off again.

``attach_all(prog_fd, interfaces, mode, replace)`` attaches the program to every
interface, all or nothing (a failure on one detaches those done before), and
returns an ``Attachment``; ``Attachment.close()`` detaches (only where the
interface still runs *our* program: an instance whose program was replaced by
another must not remove the newcomer).

- Through a BPF link (libbpf's ``bpf_link_create`` with BPF_XDP): the kernel
  detaches the program when the last fd of the link closes, so when the process
  dies however it dies (SIGKILL, the OOM killer). Where the kernel has no XDP
  links, netlink attach is the fallback, with a note: such a program stays after
  the process dies, and ``xdpmon detach -i IFACE`` removes it.
- ``mode``: ``native`` (the driver runs it), ``generic`` (the kernel's generic
  hook, after the socket buffer is built: slower, works everywhere), ``auto``
  (native, and generic with a note saying why native was refused).
- An interface that already has an XDP program is refused, naming the program's
  id and name, unless ``replace``. Replacing is atomic (the interface never runs
  no program): a program held by a link (another xdpmon instance) is replaced in
  that link (``bpf_link_update`` with the expected old program); a program
  attached by netlink is replaced by netlink with XDP_FLAGS_REPLACE and the
  expected old program, which leaves a netlink attach (the kernel cannot turn a
  netlink attach into a link without a moment with no program).

Errors are ``AttachError`` with a paragraph for the operator.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass, field

from . import libbpf as L

MODES = ("auto", "native", "generic")
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921


class AttachError(RuntimeError):
    """Attaching failed; ``str()`` is the paragraph for the operator."""


@dataclass
class Attached:
    """The program on one interface."""
    name: str
    ifindex: int
    mode: str                                 # native or generic
    how: str                                  # "link" or "netlink"
    link_fd: int | None = None
    link_id: int | None = None
    prog_id: int = 0
    note: str | None = None
    replaced: str | None = None               # the program it replaced: "id N (name)"

    def to_json(self) -> dict:
        return {"name": self.name, "ifindex": self.ifindex, "mode": self.mode, "how": self.how,
                "link_id": self.link_id, "prog_id": self.prog_id, "note": self.note, "replaced": self.replaced}


@dataclass
class Attachment:
    results: list[Attached] = field(default_factory=list)

    def close(self) -> list[str]:
        """Detach from every interface (ours only); what could not be done."""
        problems = []
        while self.results:
            a = self.results.pop()
            try:
                detach_one(a)
            except OSError as e:
                problems.append(f"{a.name}: {e}")
        return problems


# ---- interfaces ----------------------------------------------------------------------------

def ifindex_of(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        known = sorted(n for _, n in socket.if_nameindex())
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        raise AttachError(f"interface '{name}' does not exist in this network namespace "
                          f"(interfaces here: {shown or 'none'})") from None


def is_up(name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", name.encode()[:15], 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
    return bool(flags & IFF_UP)


def mtu_of(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16si12x", name.encode()[:15], 0)
        return struct.unpack("16si12x", fcntl.ioctl(s.fileno(), SIOCGIFMTU, req))[1]


def present(ifindex: int) -> tuple[int, str] | None:
    """(prog id, mode) of the XDP program on the interface, or None."""
    q = L.xdp_query(ifindex)
    mode = L.XDP_ATTACHED.get(q.attach_mode, str(q.attach_mode))
    pid = q.prog_id or q.drv_prog_id or q.skb_prog_id or q.hw_prog_id
    return (pid, mode) if pid else None


def link_of(ifindex: int, prog_id: int) -> int | None:
    """The id of the XDP link that holds ``prog_id`` on ``ifindex``, or None (netlink)."""
    for lid, pid in L.xdp_links().get(ifindex, ()):
        if pid == prog_id:
            return lid
    return None


def describe(prog_id: int) -> str:
    name = L.prog_name(prog_id)
    return f"id {prog_id}" + (f" ({name})" if name else "")


# ---- attaching ------------------------------------------------------------------------------

def _why_not_native(err: int, name: str) -> str:
    if err == errno.EOPNOTSUPP:
        return f"the driver of {name} has no native XDP"
    if err == errno.ERANGE:
        return (f"the MTU of {name} ({mtu_of(name):,}) is too large for native XDP on its driver, which "
                f"holds a frame in one page (e.g. ip link set {name} mtu 1500)")
    if err == errno.EINVAL:
        return (f"the driver refused native XDP on {name} ({os.strerror(err)}: e.g. an MTU or a feature "
                f"such as LRO that native XDP cannot work with)")
    if err == errno.ENOMEM:
        return f"the driver of {name} could not allocate its XDP rings"
    return f"the driver refused native XDP on {name}: {os.strerror(err)}"


def _link(prog_fd: int, a: Attached, flags: int) -> None:
    fd = L.link_create(prog_fd, a.ifindex, flags)
    a.link_fd, a.how = fd, "link"
    a.link_id = L.link_info(fd).id


def _attach_mode(prog_fd: int, a: Attached, mode: str, use_links: bool) -> None:
    flags = L.MODE_FLAGS[mode]
    a.mode = mode
    if use_links:
        _link(prog_fd, a, flags)
    else:
        L.xdp_attach(a.ifindex, prog_fd, flags | L.XDP_FLAGS_UPDATE_IF_NOEXIST)
        a.how = "netlink"


def _fresh(prog_fd: int, a: Attached, mode: str) -> None:
    """Attach where nothing is: a link (netlink where the kernel has no XDP links)."""
    modes = ["native", "generic"] if mode == "auto" else [mode]
    for m in modes:
        try:
            try:
                _attach_mode(prog_fd, a, m, use_links=True)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP) or L.xdp_query(a.ifindex).prog_id:
                    raise
                # EINVAL from link_create: maybe no XDP links (kernels before 5.9): try netlink
                _attach_mode(prog_fd, a, m, use_links=False)
                a.note = (f"{a.name}: attached by netlink, not by a BPF link (this kernel refused the link): "
                          f"the program stays attached if xdpmon dies without detaching; "
                          f"'xdpmon detach -i {a.name}' removes it")
            return
        except OSError as e:
            if m == "native" and mode == "auto":
                a.note = f"{a.name}: generic XDP, not native: {_why_not_native(e.errno, a.name)}"
                continue
            raise AttachError(f"cannot attach to {a.name} in {m} mode: {_failure(e, m, a.name)}") from None


def _failure(e: OSError, mode: str, name: str) -> str:
    if e.errno == errno.EPERM:
        return "not permitted (attaching needs root, or CAP_NET_ADMIN and CAP_BPF)"
    if mode == "native":
        return _why_not_native(e.errno, name) + " (--xdp-mode generic works on any interface)"
    return os.strerror(e.errno or 0)


def _replace(prog_fd: int, a: Attached, old_id: int, old_mode: str, mode: str) -> None:
    """Put our program where ``old_id`` runs, atomically."""
    a.replaced = describe(old_id)
    lid = link_of(a.ifindex, old_id)
    old_fd = L.prog_fd_by_id(old_id)
    try:
        if lid is not None:
            fd = L.link_fd_by_id(lid)
            try:
                L.link_update(fd, prog_fd, old_fd)
            except BaseException:
                os.close(fd)
                raise
            a.how, a.link_fd, a.link_id = "link", fd, lid
            a.mode = old_mode
            a.note = (f"{a.name}: replaced {a.replaced} in its BPF link {lid} (the link of another process; "
                      f"it now also belongs to this one)")
        else:
            m = old_mode if old_mode in L.MODE_FLAGS else ("native" if mode == "auto" else mode)
            L.xdp_attach(a.ifindex, prog_fd, L.MODE_FLAGS[m], old_prog_fd=old_fd)
            a.how, a.mode = "netlink", m
            a.note = (f"{a.name}: replaced {a.replaced} by netlink (it was attached by netlink; a link cannot "
                      f"take its place without a moment with no program): the program stays attached if "
                      f"xdpmon dies without detaching; 'xdpmon detach -i {a.name}' removes it")
    finally:
        os.close(old_fd)


def attach_one(prog_fd: int, name: str, mode: str = "auto", replace: bool = False) -> Attached:
    if mode not in MODES:
        raise AttachError(f"unknown XDP mode '{mode}' (modes: {', '.join(MODES)})")
    ifindex = ifindex_of(name)
    if not is_up(name):
        raise AttachError(f"interface '{name}' is down: bring it up first (ip link set {name} up)")
    a = Attached(name, ifindex, mode, "link")
    a.prog_id = L.prog_head(prog_fd).id
    try:
        cur = present(ifindex)
    except OSError as e:
        raise AttachError(f"cannot query the XDP program of {name}: {_failure(e, 'generic', name)}") from None
    if cur is not None:
        old_id, old_mode = cur
        if old_id == a.prog_id:
            raise AttachError(f"{name} already runs this program ({describe(old_id)})")
        if not replace:
            how = "a BPF link" if link_of(ifindex, old_id) is not None else "netlink"
            raise AttachError(f"{name} already has an XDP program: {describe(old_id)}, {old_mode} mode, "
                              f"attached by {how}. xdpmon does not take an interface from another program "
                              f"unless told: --replace swaps it atomically, or remove it first "
                              f"('xdpmon detach -i {name}' for a leftover)")
        try:
            _replace(prog_fd, a, old_id, old_mode, mode)
        except OSError as e:
            raise AttachError(f"cannot replace {describe(old_id)} on {name}: {_failure(e, old_mode, name)}") from None
        return a
    _fresh(prog_fd, a, mode)
    return a


def detach_one(a: Attached) -> None:
    """Take our program off ``a``'s interface, if it is still ours there."""
    try:
        if a.how == "link" and a.link_fd is not None:
            try:
                li = L.link_info(a.link_fd)
                if li.prog_id == a.prog_id:
                    L.link_detach(a.link_fd)
            finally:
                os.close(a.link_fd)
                a.link_fd = None
        elif a.how == "netlink":
            cur = present(a.ifindex)
            if cur is not None and cur[0] == a.prog_id:
                fd = L.prog_fd_by_id(a.prog_id)
                try:
                    L.xdp_detach(a.ifindex, L.MODE_FLAGS.get(a.mode, 0), old_prog_fd=fd)
                finally:
                    os.close(fd)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENODEV, errno.ENOLINK):
            raise


def attach_all(prog_fd: int, interfaces: list[str], mode: str = "auto", replace: bool = False) -> Attachment:
    if not interfaces:
        raise AttachError("no interface to attach to: name one with -i IFACE")
    dup = {n for n in interfaces if interfaces.count(n) > 1}
    if dup:
        raise AttachError(f"interface {', '.join(sorted(dup))} named twice")
    att = Attachment()
    try:
        for name in interfaces:
            att.results.append(attach_one(prog_fd, name, mode, replace))
    except BaseException:
        att.close()
        raise
    return att
