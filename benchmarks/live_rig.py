"""The live benchmarks' rig: a veth pair between two namespaces (tests/netns.py), the
generator (runtime/traffic) pinned to one CPU on the peer side, the receiver's NAPI
threaded and pinned to the other CPU on the monitor side, and the meters.

Why threaded NAPI: a veth's receive work runs in the NAPI poll of the receiving end.
By default that poll is a softirq on the CPU that queued the frames, i.e. the
generator's own CPU (after each batch of a live test run), so the sender would pay
the receiver's work and nothing could ever be lost. With ``threaded`` on, the poll is
a kernel thread (``napi/IFACE-ID``) that we pin to the receiving CPU: the generator's
CPU only sends, the receiving CPU only receives, and when the receiver is too slow
the veth's ring (256 frames) overflows: those frames are lost, and counted
(rx_dropped of the receiving end).

The machine is shared (other engineers' tests run beside the benchmark): the
generator's thread and the NAPI threads run SCHED_FIFO (priorities 50 and 60), so ordinary
processes on those CPUs do not delay them; a trial is short (a fraction of a second).

Meters, each a before/after difference over one trial:
- frames seen: the attached program's run count (``run_cnt``; bpf stats on through
  BPF_ENABLE_STATS, an fd: the kernel turns them off again when it is closed, also if
  the process dies) and its run time (``run_time_ns``): the program's own cost;
- the receiver's CPU: the NAPI threads' run time (/proc/PID/schedstat, ns) over the
  trial's wall time, and the receiving CPU's system + softirq + irq time from
  /proc/stat (the whole CPU, whoever used it);
- the veth's rx_dropped (ip -s -j link): frames the ring could not take.

The VM has no cpuidle driver: an idle CPU halts, and waking the NAPI thread on a
halted virtual CPU takes long enough for the 256-frame ring to overflow at rates the
CPU handles easily. A SCHED_IDLE busy loop on the receiving CPU keeps it from
halting (it runs only when nothing else wants the CPU; /proc/stat counts it as user
time, which the busy share below leaves out, and the NAPI thread's own run time is
not affected).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from netns import VethPair, sh  # noqa: E402

from runtime.dataplane.attach import attach_all  # noqa: E402
from runtime.dataplane.bpf_test_run import _syscall, _syscall_nr  # noqa: E402
from runtime.dataplane.loader import _BpfProgInfo, _InfoAttr  # noqa: E402
from runtime.traffic import frames as F  # noqa: E402
from runtime.traffic.livegen import LiveGenerator  # noqa: E402

BPF_OBJ_GET_INFO_BY_FD, BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 15, 32, 0
GEN_PRIORITY = 50            # SCHED_FIFO priority of the generator's thread
NAPI_PRIORITY = 60           # and of the receiver's NAPI threads: above the generator's, so that
                             # one woken on the generator's CPU runs at once
CHUNK = 128                  # frames per test-run call: 2 kernel batches of 64, each flushed to the
                             # veth (whose ring holds 256, less up to 16 its consumer frees lazily),
                             # so a burst fills at most half the ring


def enable_bpf_stats() -> int:
    """Turn on the kernel's BPF run-time stats; they stay on while the fd is open."""
    attr = ctypes.c_uint32(BPF_STATS_RUN_TIME)
    fd = _syscall(_syscall_nr(), BPF_ENABLE_STATS, ctypes.byref(attr), 4)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_ENABLE_STATS: {os.strerror(err)}")
    return fd


def run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_cnt, run_time_ns) of a program."""
    info = _BpfProgInfo()
    attr = _InfoAttr(prog_fd, ctypes.sizeof(info), ctypes.addressof(info))
    if _syscall(_syscall_nr(), BPF_OBJ_GET_INFO_BY_FD, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_OBJ_GET_INFO_BY_FD: {os.strerror(err)}")
    return int(info.run_cnt), int(info.run_time_ns)


def cpu_busy_ticks(cpu: int) -> tuple[int, int]:
    """(system + irq + softirq, all) clock ticks of ``cpu`` from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            return v[2] + v[5] + v[6], sum(v[:8])
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def napi_threads(ifname: str) -> list[int]:
    """Pids of the NAPI threads of interface ``ifname`` (comm ``napi/IFNAME-ID``)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip().startswith(f"napi/{ifname}-"):
                    out.append(int(p.name))
            except OSError:
                pass
    return sorted(out)


def thread_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


_SPIN = "import os,sys; os.sched_setaffinity(0,{int(sys.argv[1])}); os.sched_setscheduler(0,os.SCHED_IDLE,os.sched_param(0))\nwhile True: pass"


def _spinner(cpu: int):
    """A SCHED_IDLE busy loop on ``cpu``: the CPU never halts, so waking the NAPI
    thread is not a wake-up of a halted virtual CPU (tens of microseconds here; the
    VM has no cpuidle driver, an idle CPU executes HLT). It runs only when nothing
    else wants the CPU, and is killed with the rig."""
    import subprocess
    return subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu)])


@dataclass
class Trial:
    config: str
    target_pps: float
    sent: int
    seen: int
    dropped: int              # the veth's rx_dropped over the trial
    rate_pps: float           # achieved by the generator
    elapsed_s: float
    napi_busy: float          # the receiver's NAPI threads: share of one CPU
    napi_ns_per_frame: float  # their run time per frame seen
    cpu_busy: float           # the receiving CPU: sys + irq + softirq share (/proc/stat)
    prog_ns: float            # the program's run time per run (bpf stats)
    per_queue_busy: list      # each NAPI thread's share, in creation (queue) order
    retries: int = 0          # generator calls refused for now and made again (ENOSPC, EINTR)

    @property
    def loss_free(self) -> bool:
        return self.seen == self.sent

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["loss_free"] = self.loss_free
        return d


class Rig:
    """A veth pair with ``queues`` receive queues; generator on ``gen_cpu``, the
    receiver's NAPI thread of queue i on ``rx_cpus[i % len(rx_cpus)]``. Frames: UDP, 60 bytes, ``sources`` source
    addresses from 198.18.128.0 in turn (a new source per frame), to the monitor's
    address (off-subnet sources: nothing the stack answers is routed back)."""

    def __init__(self, queues: int = 1, gen_cpu: int = 0, rx_cpus: tuple = (1,), sources: int = 1024,
                 keep_awake: bool = True):
        self.gen_cpu, self.rx_cpus, self.queues = gen_cpu, tuple(rx_cpus), queues
        self.rx_cpu = self.rx_cpus[0]
        self.spinners = [_spinner(c) for c in sorted(set(self.rx_cpus))] if keep_awake else []
        n = os.getpid() % 1000
        # names of our own, so that our NAPI threads (napi/IFNAME-ID) are told from others'
        pair_cls = type("LivePair", (VethPair,), {"MON_IF": f"lvm{n}q{queues}", "PEER_IF": f"lvp{n}q{queues}"})
        self.pair = pair_cls(queues=queues)
        self.ifname = self.pair.MON_IF
        self.gen = self.att = None
        try:
            mac = json.loads(sh("ip", "-n", self.pair.mon_ns, "-j", "link", "show", self.ifname).stdout)[0]["address"]
            t = F.build("udp", "198.18.128.0", self.pair.mon_addr, dst_mac=mac)
            self.gen = LiveGenerator(t, self.pair.PEER_IF, self.pair.peer_ns, src_count=sources)
        except BaseException:
            self.close()
            raise

    def attach(self, prog_fd: int) -> list[int]:
        """Attach (native), make the veth's NAPI threaded (a veth has NAPI only while an
        XDP program is attached, so each attach makes new ones) and pin its threads."""
        with self.pair.monitor():
            self.att = attach_all(prog_fd, [self.ifname], mode="native")
        sh("ip", "netns", "exec", self.pair.mon_ns, "sh", "-c", f"echo 1 > /sys/class/net/{self.ifname}/threaded")
        pids = napi_threads(self.ifname)
        if len(pids) != self.queues:
            raise RuntimeError(f"{len(pids)} NAPI threads for {self.ifname}, not {self.queues} (threaded NAPI?)")
        for i, pid in enumerate(pids):
            os.sched_setaffinity(pid, {self.rx_cpus[i % len(self.rx_cpus)]})
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(NAPI_PRIORITY))
        self.napi = pids
        return pids

    def detach(self) -> None:
        if self.att is not None:
            with self.pair.monitor():
                self.att.close()
            self.att = None

    def rx_dropped(self) -> int:
        out = sh("ip", "-n", self.pair.mon_ns, "-s", "-j", "link", "show", self.ifname).stdout
        return json.loads(out)[0]["stats64"]["rx"]["dropped"]

    def trial(self, config: str, prog_fd: int, rate: float | None, seconds: float, gen_cpus=None) -> Trial:
        """Offer ``rate`` frames/s (None: as fast as the generator goes) for ``seconds``;
        from one thread on each of ``gen_cpus`` at once, if given (the rate shared)."""
        count = int((rate or 5e6) * seconds)
        r0, d0, c0 = run_stats(prog_fd), self.rx_dropped(), cpu_busy_ticks(self.rx_cpu)
        n0 = [thread_ns(p) for p in self.napi]
        t0 = time.perf_counter()
        if gen_cpus:
            res = self.gen.send_parallel(count, rate, list(gen_cpus), fifo_priority=GEN_PRIORITY, chunk=CHUNK,
                                         timeout_s=seconds * 3 + 1)
        else:
            res = self.gen.send(count, rate, cpu=self.gen_cpu, fifo_priority=GEN_PRIORITY, chunk=CHUNK,
                                timeout_s=seconds * 3 + 1)
        time.sleep(0.02)                         # the receiver drains its ring
        wall = time.perf_counter() - t0
        r1, d1, c1 = run_stats(prog_fd), self.rx_dropped(), cpu_busy_ticks(self.rx_cpu)
        n1 = [thread_ns(p) for p in self.napi]
        seen = r1[0] - r0[0]
        napi = [(b - a) / 1e9 / wall for a, b in zip(n0, n1)]
        busy = (c1[0] - c0[0]) / max(1, c1[1] - c0[1])
        return Trial(config, rate or 0.0, res.sent, seen, d1 - d0, res.rate_pps, res.elapsed_s, sum(napi),
                     sum(b - a for a, b in zip(n0, n1)) / seen if seen else 0.0, busy,
                     (r1[1] - r0[1]) / seen if seen else 0.0, napi, res.retries)

    def close(self) -> None:
        try:
            self.detach()
        finally:
            for p in self.spinners:
                p.kill()
                p.wait()
            self.spinners = []
            if self.gen is not None:
                self.gen.close()
            self.pair.close()
