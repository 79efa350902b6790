"""CPU an idle running instance uses: `xdpmon run` with all of specs/ attached
to a veth in a network namespace of its own, no traffic, reading its maps every
second, no view (--view none) and with the plain view. The process's own CPU
time (the run time of each of its threads, /proc/PID/task/*/schedstat, in ns) over
``MEASURE_S`` seconds of steady state, as a share of one core. The start
(compile and load) is left out: measured from the first reading on. Target:
<= 1 % of a core. Needs root and BPF.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURE_S = int(os.environ.get("XDPMON_BENCH_SECONDS", "20"))
ROUNDS = int(os.environ.get("XDPMON_BENCH_ROUNDS", "3"))
sys.path.insert(0, str(ROOT / "tests"))


def _cpu_s(pid: int) -> float:
    """CPU time of every thread of ``pid`` (schedstat: ns, not clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass              # a thread that ended meanwhile
    return total / 1e9


def _child(pid: int) -> int:
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return int(kids[0]) if kids else pid


def measure(view: str) -> float:
    from netns import VethPair

    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.mon"))
    with VethPair() as pair:
        p = pair.run_in_monitor([sys.executable, "-m", "runtime.cli", "run", *specs, "-i", "mon", "--view", view,
                                 "--interval", "1s", "--duration", f"{MEASURE_S + 30}s"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            while "attached to" not in (p.stderr.readline() or "attached to"):
                pass
            time.sleep(2)                                   # the first readings
            pid = _child(p.pid)
            c0, t0 = _cpu_s(pid), time.monotonic()
            time.sleep(MEASURE_S)
            c1, t1 = _cpu_s(pid), time.monotonic()
        finally:
            p.terminate()
            subprocess.run(["pkill", "-TERM", "-P", str(p.pid)])
            p.wait(timeout=60)
    return 100 * (c1 - c0) / (t1 - t0)


def main() -> dict:
    out = {}
    for view in ("none", "plain"):
        runs = sorted(measure(view) for _ in range(ROUNDS))
        out[f"idle CPU, view {view} (% of a core, median [min-max] of {ROUNDS} x {MEASURE_S}s)"] = \
            f"{runs[len(runs) // 2]:.2f} [{runs[0]:.2f}-{runs[-1]:.2f}] (target <= 1)"
    return out


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
