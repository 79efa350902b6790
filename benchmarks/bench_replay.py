"""Replay speed: frames per second of the two engines behind ``xdpmon replay``, on
the same frames read from captures, measured in one run.

- kernel engine (runtime.engines.kernel.KernelEngine): the replay build of all specs/
  merged, one BPF_PROG_TEST_RUN per frame (target: at least 100,000 frames/s);
- reference engine (runtime.engines.reference.engine.ReferenceEngine): the same program
  interpreted in Python (target: at least 30,000 frames/s).

Captures: the corpus ../shared/corpus/tcpdump-tests/ (every Ethernet capture, read
in place), and a traffic capture: build/demo.pcap when ``make demo`` made it,
else the ``mixed`` generator (examples/traffic) for a few seeds, written to a
temporary pcap. Frames are read once; each engine then replays them (several
passes, at least MIN_SECONDS of measurement, on the capture's clock; a new
reference engine for each pass, so that its caches start cold) and the figure is
frames / wall time of ``run_frame`` calls (which poll the ring buffers after
every frame, as ``xdpmon replay`` does). Refused frames (shorter
than 14 bytes) count as frames: the replay command sees them too.

Without root the kernel engine is skipped and only the reference is measured.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("XDPMON_CORPUS", ROOT.parent / "shared" / "corpus" / "tcpdump-tests"))
DEMO = ROOT / "build" / "demo.pcap"
KERNEL_TARGET = 100_000
REFERENCE_TARGET = 30_000
MIN_SECONDS = 1.5
MIXED_SEEDS = range(1, 9)


def _read(paths) -> list[tuple[int, bytes]]:
    from runtime.capture.pcap import CaptureError, read_frames

    frames = []
    for p in paths:
        try:
            frames.extend((f.ts_ns, f.data) for f in read_frames(str(p)))
        except CaptureError:
            continue
    return frames


def captures() -> dict[str, list[tuple[int, bytes]]]:
    out = {}
    if CORPUS.is_dir():
        out["corpus"] = _read(sorted(CORPUS.glob("*.pcap*")))
    if DEMO.is_file():
        out["demo"] = _read([DEMO])
    else:
        from examples.traffic import generators as g

        frames = []
        for seed in MIXED_SEEDS:
            t0 = frames[-1][0] + 1_000_000_000 if frames else 0
            frames += g.mixed(seed, t0=t0)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "mixed.pcap"
            g.write_pcap(str(path), frames)
            out["mixed"] = _read([path])
    return out


def measure(make_engine, frames, fresh_each_pass: bool) -> tuple[float, int]:
    """(frames/s, passes): replay ``frames`` until MIN_SECONDS have been measured.
    The reference engine is made anew for every pass (its hash and estimate caches
    start cold, as in one ``xdpmon replay``); the kernel engine is loaded once."""
    eng = make_engine()
    n = 0
    elapsed = 0.0
    passes = 0
    try:
        while elapsed < MIN_SECONDS:
            if fresh_each_pass and passes:
                eng.close()
                eng = make_engine()
            run = eng.run_frame
            t = time.perf_counter()
            for ts, data in frames:
                run(ts, data)
            elapsed += time.perf_counter() - t
            eng.events.take()            # as a consumer would: the queue stays bounded, nothing dropped
            n += len(frames)
            passes += 1
        return n / elapsed, passes
    finally:
        eng.close()


def main() -> dict:
    from compiler.driver import compile_files
    from runtime.engines.reference.engine import ReferenceEngine

    art = compile_files(sorted(str(p) for p in (ROOT / "specs").glob("*.mon")), replay=True)
    kernel_ok = os.geteuid() == 0
    if kernel_ok:
        from runtime.engines.kernel import KernelEngine
    else:
        print("replay benchmark: the kernel engine needs root; measuring the reference engine only")
    results: dict = {"apps": len(art.ir.apps)}
    print(f"all specs merged: {len(art.ir.apps)} apps, {len(art.ir.maps)} maps")
    for name, frames in captures().items():
        if not frames:
            continue
        ref_fps, ref_passes = measure(lambda: ReferenceEngine(art), frames, True)
        line = f"  {name:7} {len(frames):6,} frames: reference {ref_fps:9,.0f} frames/s ({ref_passes} passes)"
        results[f"{name}.frames"] = len(frames)
        results[f"{name}.reference_fps"] = round(ref_fps)
        results[f"{name}.reference_target_met"] = ref_fps >= REFERENCE_TARGET
        if kernel_ok:
            ker_fps, ker_passes = measure(lambda: KernelEngine(art), frames, False)
            line += f", kernel {ker_fps:9,.0f} frames/s ({ker_passes} passes), kernel/reference {ker_fps / ref_fps:.2f}x"
            results[f"{name}.kernel_fps"] = round(ker_fps)
            results[f"{name}.kernel_target_met"] = ker_fps >= KERNEL_TARGET
            results[f"{name}.kernel_over_reference"] = round(ker_fps / ref_fps, 2)
        print(line)
    print(f"  targets: kernel >= {KERNEL_TARGET:,} frames/s, reference >= {REFERENCE_TARGET:,} frames/s")
    return results


if __name__ == "__main__":
    main()
