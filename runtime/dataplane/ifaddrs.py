"""The addresses an interface has, as ``ip -j addr show dev IFACE`` (iproute2)
lists them: what a running instance never blocks (its own traffic)."""

from __future__ import annotations

import json
import subprocess


def addresses(ifname: str) -> list[str]:
    """The IPv4 and IPv6 addresses of ``ifname`` (link-local too); [] when the
    interface has none or iproute2 cannot tell (the caller notes it)."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show", "dev", ifname], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        links = json.loads(out or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    return [a["local"].split("%")[0] for link in links for a in link.get("addr_info", ())
            if a.get("family") in ("inet", "inet6") and a.get("local")]
