"""Decide whether a kernel test runs, is skipped, or fails.

Kernel tests (marked ``@pytest.mark.kernel`` or using the ``kernel`` fixture) need root
and a working BCC/BPF. Where those are missing they are skipped, except under
``XDPMON_REQUIRE_KERNEL=1`` (CI), where a skip would hide lost coverage: they fail instead.

``XDPMON_FORCE_NO_BPF=<reason>`` simulates an unavailable kernel (to test this guard).
"""

from __future__ import annotations

import os
from functools import lru_cache

REQUIRE_ENV = "XDPMON_REQUIRE_KERNEL"
FORCE_ENV = "XDPMON_FORCE_NO_BPF"

RUN, SKIP, FAIL = "run", "skip", "fail"

_PROBE_PROG = "int xdpmon_probe(struct xdp_md *ctx) { return XDP_PASS; }"


def kernel_guard(reason: str | None, require: bool) -> str:
    """Pure policy: ``reason`` is why the kernel is unusable (None: usable)."""
    if reason is None:
        return RUN
    return FAIL if require else SKIP


def require_kernel() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "1"


@lru_cache(maxsize=1)
def _probe() -> str | None:
    """Load a trivial XDP program once per process; the reason it failed, or None."""
    if os.geteuid() != 0:
        return "kernel test needs root (euid is %d)" % os.geteuid()
    try:
        import bcc
    except Exception as exc:  # ImportError, or libbcc failing to load
        return f"cannot import bcc ({exc!r}); install python3-bpfcc (make setup)"
    try:
        b = bcc.BPF(text=_PROBE_PROG)
        try:
            fd = b.load_func("xdpmon_probe", bcc.BPF.XDP).fd
        finally:
            b.cleanup()
    except Exception as exc:
        return f"BPF unavailable: loading a trivial XDP program failed ({exc})"
    if fd <= 0:
        return f"BPF unavailable: load_func returned fd {fd}"
    return None


def kernel_unavailable_reason() -> str | None:
    forced = os.environ.get(FORCE_ENV)
    if forced:
        return f"{forced} (forced by {FORCE_ENV})"
    return _probe()
