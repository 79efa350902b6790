"""Ring buffer events decoded and delivered to a no-op handler per second, on one
core. Target: >= 200,000 events/s.

Real records: the live build of one app whose rule sends a packet record
(ip.src, ip.dst, udp.sport, udp.dport, pkt.len) for every UDP frame, with no
rate limit (the largest: 4294967295/s), runs under BPF_PROG_TEST_RUN with
``repeat`` (one call, CHUNK runs, CHUNK records in the ring buffer), while the
ASL host runs live: its consumer thread waits on the rings' epoll fd and takes
each record (libbpf ring_buffer__consume) into the app's queue; the app's worker
thread decodes it into the stub's typed event and hands it to ``on_packet`` of a
handler that does nothing. The process is pinned to one CPU: the consumer, the
worker and the benchmark share one core.

Time: the process's CPU time (every thread: consumer, worker, the benchmark's
own waiting loop) from the start of the host to the last event delivered, less
the time the kernel spent running the program itself (its reported mean run
time x runs: the data plane, not the ASL). Wall time is longer and not the
measure: each BPF_PROG_TEST_RUN call sleeps in the kernel (synchronize_rcu, a
few ms here) before it runs, which no interface does; the records are produced
by the consumer thread itself between its polls whenever the ring has room for
a chunk, so that sleep is the only idle time. The ring never fills: the kernel
counter app.bench.ringbuf_full stays 0 and the count delivered equals
app.bench.events, the records the program wrote (checked).

Also, per event in one thread, where the time goes: the consumer's share (read
the action, queue the record), the worker's (decode into the typed event, call
the handler), and replay's decode into an event dict. Needs root and BPF.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

EVENTS = int(os.environ.get("XDPMON_BENCH_ASL_EVENTS", "1000000"))
CHUNK = 3000                       # records per test run
RING = 4096                        # records the ring holds (256 KiB of 64-byte records)
TARGET = 200_000

SPEC = """app bench {
  t1 { select udp }
  t3 { when pkt.len > 0 { send packet(ip.src, ip.dst, udp.sport, udp.dport, pkt.len) to asl limit 4294967295/s } }
  asl "HANDLER"
}
"""
HANDLER = """
class Noop:
    def __init__(self, ctx):
        pass

    def on_packet(self, event):
        pass

HANDLER = Noop
"""


def _setup(tmp: Path):
    from compiler.driver import compile_files

    (tmp / "noop.py").write_text(HANDLER)
    (tmp / "bench.mon").write_text(SPEC.replace("HANDLER", str(tmp / "noop.py")))
    return compile_files([str(tmp / "bench.mon")], replay=False)


def _frame() -> bytes:
    from engine_helpers import udp

    return udp(src="198.18.0.1", dst="198.19.0.1", sport=1000, dport=53, pad=20)


def _wait(cond, pause: float = 0.0, limit_s: float = 60.0) -> None:
    end = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError("the ASL host stopped taking records (see the counters)")
        time.sleep(pause)


class _Producing:
    """The program's maps as the host's consumer sees them, producing a chunk of
    records (a test run) before each poll when the ring has room for it: the
    consumer thread itself drives the kernel, so the records are there when it
    looks, as a busy interface would have them (a producer thread of its own would
    wait for the GIL between chunks and leave the core idle)."""

    def __init__(self, maps, runner, frame, n, received):
        self.maps, self.runner, self.frame, self.n, self.received = maps, runner, frame, n, received
        self.produced = self.kernel_ns = 0

    def open_events(self, sink, raw=False):
        self.maps.open_events(sink, raw)

    def poll_events(self, timeout_ms=None):
        k = min(CHUNK, self.n - self.produced)
        if k and self.produced - self.received() <= RING - CHUNK:
            res = self.runner.run(self.frame, repeat=k)
            self.produced += k
            self.kernel_ns += res.duration_ns * k
        self.maps.poll_events(timeout_ms if not k else 0)


def live_rate(art, n: int) -> dict:
    from runtime.asl.host import AslHost
    from runtime.dataplane.bpf_test_run import TestRunner
    from runtime.engines.live import LiveEngine

    eng = LiveEngine(art)
    try:
        runner = TestRunner(eng.fd, want_data_out=False)
        host = AslHost(art.manifest, art.stubs, snapshot=eng.app_snapshot, options={"bench": {"queue": 100_000}})
        worker = host.workers["bench"]
        maps = _Producing(eng.maps, runner, _frame(), n, lambda: worker.queue.received)
        t0 = time.perf_counter()
        c0 = time.process_time()
        host.start_live(maps, poll_timeout_ms=100)
        _wait(lambda: worker.handler.stats.delivered >= n, pause=0.001)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        host.stop(5.0)
        counters = eng.snapshot()["counters"]
        delivered = worker.handler.stats.delivered
        assert counters["app.bench.events"] == maps.produced == delivered == n, (counters["app.bench.events"], delivered)
        assert counters["app.bench.ringbuf_full"] == 0 and worker.queue.dropped == 0
        asl_s = cpu - maps.kernel_ns / 1e9
        return {"events": delivered, "elapsed_s": elapsed, "cpu_s": cpu, "kernel_s": maps.kernel_ns / 1e9,
                "rate": delivered / asl_s}
    finally:
        eng.close()


def parts(art, n: int = 200_000) -> dict:
    """Per event, in one thread, on a real record of the program: the consumer's
    share (its action read, queued: ``submit_record``), the worker's (decoded into
    the stub's typed event and handed to the no-op handler: ``Handler.record``),
    and the decode into an event dict that replay uses (EventDecoder)."""
    from runtime.abi.manifest import Manifest
    from runtime.abi.records import EventDecoder
    from runtime.asl.host import AslHost
    from runtime.dataplane.bpf_test_run import TestRunner
    from runtime.engines.live import LiveEngine

    man = Manifest.of(art.manifest)
    with LiveEngine(art) as eng:
        got = []
        eng.maps.open_events(got.append, raw=True)
        TestRunner(eng.fd, want_data_out=False).run(_frame())
        eng.maps.poll_events()
    (rec,) = got
    host = AslHost(man, art.stubs, options={"bench": {"queue": n}})
    w = host.workers["bench"]

    def per_event(fn, *args) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn(*args)
        return (time.perf_counter() - t) / n * 1e6
    queue = per_event(host.submit_record, rec)
    w.queue.events.clear()
    worker = per_event(w.handler.record, rec)
    decode = per_event(EventDecoder(man), rec)
    return {"queue_us": queue, "worker_us": worker, "decode_us": decode}


def main() -> dict:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    with tempfile.TemporaryDirectory() as d:
        art = _setup(Path(d))
        r = live_rate(art, EVENTS)
        p = parts(art)
    return {
        "ASL events decoded and delivered, live, one core (events/s)":
            f"{r['rate']:,.0f} per CPU second (target >= {TARGET:,}; {r['events']:,} events, "
            f"{r['cpu_s']:.2f} CPU s of which {r['kernel_s']:.2f} s the program itself; {r['elapsed_s']:.2f} s "
            f"wall, most of the rest the kernel's test-run setup sleeping in synchronize_rcu)",
        "per event, one thread (us): consumer (action, queue) / worker (typed event, no-op handler)":
            f"{p['queue_us']:.2f} / {p['worker_us']:.2f}, and the ring buffer callback itself about 1; "
            f"an event dict (replay's decode) {p['decode_us']:.2f}",
    }


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
