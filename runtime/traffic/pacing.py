"""Paced sending, shared by the generator's two ways of sending (livegen.py, txring.py).

``paced(send_chunk, counted, count, rate, chunk, timeout_s)`` makes calls of ``chunk``
frames: call ``k`` starts at ``k * chunk / rate`` (sleeping, then spinning the last
half millisecond); with no rate, back to back. ``send_chunk(n)`` sends ``n`` frames and
returns ``(err, kernel_ns_per_frame)``: ``err`` 0, or an errno after which the call is
made again for what is left (EINTR, ENOSPC); ``counted()`` is the number of frames the
sender has counted so far, the truth of what went.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

MAX_FRAMES = 100_000_000          # frames one send may ask for
SPIN_S = 0.0005                   # spin this long before a call's start time instead of sleeping
ENOSPC = 28
ENOSPC_WAIT_S = 0.001             # after ENOSPC (no XDP memory model id free: xdp_live.py)


@dataclass(frozen=True)
class SendResult:
    """What one ``send`` did."""
    requested: int                # frames asked for
    sent: int                     # frames the sender handed to the kernel (its counter)
    elapsed_s: float              # from the first call's start to the last call's end
    rate_pps: float               # sent / elapsed_s
    target_pps: float | None      # the rate asked for (None: as fast as possible)
    calls: int                    # syscalls made
    chunk: int                    # frames per syscall
    kernel_ns_per_frame: float    # the kernel's mean time per frame, over the calls (0: not known)
    late_calls: int               # calls that started more than a chunk's time late
    timed_out: bool
    retries: int = 0              # calls the kernel refused for now (EINTR, ENOSPC), made again

    def to_json(self) -> dict:
        return asdict(self)


def check_send(count: int, rate_pps: float | None, timeout_s: float, chunk: int,
               fifo_priority: int | None = None, least: int = 1) -> None:
    """A send's arguments, or ValueError saying which is wrong (both ways of sending)."""
    if not least <= count <= MAX_FRAMES:
        raise ValueError(f"count is {least}..{MAX_FRAMES:,} frames, not {count}")
    if rate_pps is not None and not rate_pps > 0:
        raise ValueError(f"rate must be > 0 frames/s, not {rate_pps}")
    if not timeout_s > 0:
        raise ValueError(f"timeout must be > 0 s, not {timeout_s}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 frame, not {chunk}")
    if fifo_priority is not None and not 1 <= fifo_priority <= 99:
        raise ValueError(f"SCHED_FIFO priority is 1..99, not {fifo_priority}")


def paced(send_chunk: Callable[[int], tuple[int, float]], counted: Callable[[], int], count: int,
          rate: float | None, chunk: int, timeout_s: float,
          should_stop: Callable[[], bool] | None = None) -> SendResult:
    """One thread's paced calls (see the module's doc). ``should_stop``: asked before
    each call; True ends the send early (what went is in the result)."""
    clock, sleep = time.perf_counter, time.sleep
    before = counted()
    gap = chunk / rate if rate else 0.0
    calls = late = retries = 0
    ns_sum = 0.0
    left = count
    t0 = clock()
    deadline = t0 + timeout_s
    timed_out = False
    while left > 0:
        if should_stop is not None and should_stop():
            break
        now = clock()
        if now > deadline:
            timed_out = True
            break
        if rate:
            due = t0 + calls * gap
            if due - now > SPIN_S:
                sleep(due - now - SPIN_S)
            while clock() < due:
                pass
            if now - due > gap:
                late += 1
        n = min(chunk, left)
        err, ns = send_chunk(n)
        if err:                                      # EINTR, ENOSPC: what went is in the counter
            left = count - (counted() - before)
            retries += 1
            if err == ENOSPC:
                sleep(ENOSPC_WAIT_S)                 # old page pools are being released
        else:
            left -= n
            ns_sum += ns * n
        calls += 1
    elapsed = clock() - t0
    sent = counted() - before
    return SendResult(count, sent, elapsed, sent / elapsed if elapsed > 0 else 0.0, rate, calls, chunk,
                      ns_sum / sent if sent else 0.0, late, timed_out, retries)
