"""Reading a 1,000,000-entry hash map as a running instance does each interval
(runtime/monitor/reading.py ``Reader.read``): every entry read from the kernel
in batches (runtime/dataplane/batch.py ``read_columns``), the statistic's keys
counted, its 1,000 largest decoded, rates and fill levels computed.

The map is filled from user space (BPF_MAP_UPDATE_BATCH) with known values:
key i is the address 198.18.0.0 + i, packets i + 1 and bytes 64 (i + 1); the
benchmark checks the reading says 1,000,000 keys, lists 1,000 and that the
largest is key 999,999 with exactly those values -- so what is timed is the
whole reading, right. ``ROUNDS`` readings; median and spread. Target: <= 1 s.
For scale, one full decode of every key (what `replay` prints, and `run
--keys all`) is timed once. Needs root and BPF.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import statistics
import struct
import tempfile
import time

N = 1_000_000
ROUNDS = int(os.environ.get("XDPMON_BENCH_ROUNDS", "7"))
SPEC = """app big {
  t1 { select ip }
  t2 { per_dst = count() as packets, sum(pkt.len) as bytes by ip.dst size 1048576 }
}
"""


def fill(t, off: dict, lo: int, hi: int) -> None:
    """Keys lo..hi-1 of BCC table ``t``: 198.18.0.0 + i, with packets i + 1 and bytes
    64 (i + 1) (``off``: the offsets of the count and sum members), by BPF_MAP_UPDATE_BATCH."""
    from bcc.libbcc import lib

    vs = ctypes.sizeof(t.Leaf)
    for base in range(lo, hi, 50_000):
        n = min(50_000, hi - base)
        keys = b"".join(b"\0" * 10 + b"\xff\xff" + struct.pack(">I", 0xC6120000 + i) for i in range(base, base + n))
        vals = bytearray(vs * n)
        for j, i in enumerate(range(base, base + n)):
            struct.pack_into("<Q", vals, j * vs + off["count"], i + 1)
            struct.pack_into("<Q", vals, j * vs + off["sum"], 64 * (i + 1))
        count = ctypes.c_uint32(n)
        kb, vb = ctypes.create_string_buffer(keys, len(keys)), ctypes.create_string_buffer(bytes(vals), len(vals))
        rc = lib.bpf_update_batch(t.map_fd, kb, vb, ctypes.byref(count))
        assert rc == 0 and count.value == n, (rc, count.value)


def _fill(eng, art) -> None:
    m = art.manifest["maps"][0]
    fill(eng.loaded.bpf[m["name"]], {mb["role"]: mb["offset"] for mb in m["value"]["members"]}, 0, N)


def main() -> dict:
    from compiler.driver import compile_files
    from runtime.abi.snapshot import build_snapshot
    from runtime.engines.live import LiveEngine
    from runtime.monitor.reading import Reader

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.mon")
        with open(path, "w") as f:
            f.write(SPEC)
        art = compile_files([path])
    eng = LiveEngine(art)
    try:
        _fill(eng, art)
        reader = Reader(eng.manifest, eng.maps, eng.now)
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            r = reader.read()
            times.append(time.perf_counter() - t0)
            app = r.snapshot["apps"]["big"]
            assert app["keys_listed"]["per_dst"] == {"listed": 1000, "keys": N, "by": "bytes"}
            entries = app["stats"]["per_dst"]
            top = max(entries, key=lambda e: e["value"]["packets"])
            assert top == {"key": {"ip.dst": str(ipaddress.IPv4Address(0xC6120000 + N - 1))},
                           "value": {"packets": N, "bytes": 64 * N}}, top
            assert min(e["value"]["packets"] for e in entries) == N - 999
            assert r.fill[art.manifest["maps"][0]["name"]]["entries"] == N
        t0 = time.perf_counter()
        full = build_snapshot(eng.manifest, eng.maps.raw_state(), eng.now())
        t_full = time.perf_counter() - t0
        assert len(full["apps"]["big"]["stats"]["per_dst"]) == N
    finally:
        eng.close()
    times.sort()
    return {f"live reading of a {N:,}-entry map (s, median [min-max] of {ROUNDS})":
            f"{statistics.median(times):.3f} [{times[0]:.3f}-{times[-1]:.3f}] (target <= 1)",
            "full decode of every key, once (s)": f"{t_full:.1f}"}


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
