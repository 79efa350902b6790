"""The new-flow wrapper (newflow.c): a small XDP program that increments the IPv4
source of the frame and tail-calls the program under test, so that each of the R
repeats of one BPF_PROG_TEST_RUN call is a packet of a new flow.

Why a wrapper: BPF_PROG_TEST_RUN keeps the packet's changes between repeats,
and a program under test must not be changed to measure it; through a
BPF_PROG_ARRAY the program runs exactly as it would when attached. The wrapper
costs a few instructions and a tail call: the floor measured for a new-flow
frame runs through the same wrapper (to the empty program), so costs above the
floor do not include it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

C_FILE = Path(__file__).with_name("newflow.c")
FUNCTION = "xb_newflow"


class NewFlowWrapper:
    """The wrapper loaded with BCC, its slot 0 holding ``target_fd``; ``.fd`` is
    what to run. Close it before (or with) the target."""

    def __init__(self, target_fd: int):
        from bcc import BPF
        if target_fd is None or int(target_fd) < 0:
            raise ValueError(f"new-flow wrapper: invalid target program fd {target_fd!r}")
        self.bpf = BPF(text=C_FILE.read_text())
        self.fn = self.bpf.load_func(FUNCTION, BPF.XDP)
        table = self.bpf["xb_target"]
        table[ctypes.c_int(0)] = ctypes.c_int(int(target_fd))

    @property
    def fd(self) -> int:
        return self.fn.fd

    def close(self) -> None:
        self.bpf.cleanup()
