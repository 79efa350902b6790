"""The XDP programs on this network namespace's interfaces: for ``xdpmon status``
and ``xdpmon detach``.

``interfaces()`` lists every interface with what runs on it: program id and
name, mode, and whether a BPF link holds it (then the kernel removes it with
its last owner) or netlink (it stays until someone removes it).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from . import libbpf as L
from .attach import present


@dataclass
class XdpOnInterface:
    ifindex: int
    name: str
    prog_id: int | None
    prog_name: str
    mode: str                 # native, generic, offload, multi, or "" when none
    link_id: int | None       # the BPF link holding it; None: netlink (or none)

    @property
    def how(self) -> str:
        if self.prog_id is None:
            return ""
        return f"link {self.link_id}" if self.link_id is not None else "netlink"

    def to_json(self) -> dict:
        return {"ifindex": self.ifindex, "name": self.name, "prog_id": self.prog_id, "prog_name": self.prog_name,
                "mode": self.mode, "attached_by": "link" if self.link_id is not None else
                ("netlink" if self.prog_id else None), "link_id": self.link_id}


def interfaces() -> list[XdpOnInterface]:
    links = L.xdp_links()
    out = []
    for ifindex, name in sorted(socket.if_nameindex()):
        try:
            cur = present(ifindex)
        except OSError:
            cur = None
        if cur is None:
            out.append(XdpOnInterface(ifindex, name, None, "", "", None))
            continue
        pid, mode = cur
        lid = next((lid for lid, p in links.get(ifindex, ()) if p == pid), None)
        out.append(XdpOnInterface(ifindex, name, pid, L.prog_name(pid), mode, lid))
    return out
