"""The paper's accuracy experiment: a SYN flood found on demand, over seeds, rates and kinds.

Each run is a capture built here and replayed through the kernel program of all of
``specs/`` with the ASL (as ``xdpmon replay --asl`` runs it: the replay build under
BPF_PROG_TEST_RUN, the handlers inline, a tick per second of capture time), so that a
run of 75 s of traffic takes seconds and gives the same events every time:

- benign traffic (runtime/demo/traffic.py ``benign_mix``: complete TCP connections, DNS,
  tagged and IPv6 frames, about 410 a second) for ``BEFORE_S`` + the flood + ``AFTER_S``;
- a SYN flood to ``VICTIM`` port 80 from ``BEFORE_S`` (plus a phase in the program's 1 s
  window, drawn per run) for ``flood_s`` seconds at ``rate`` SYN/s, evenly spaced: ``spoofed`` (each SYN from a random address of 198.18.0.0/16,
  drawn from a pool of 65,536 prebuilt SYNs) or ``real`` (``REAL_SOURCES`` sources in
  turn).

What a run measures, on the capture's clock:

- the moment the flood's rate passes syn_flood's ``per_dst`` (runtime/demo/scenario.py
  ``crossing_ns``: the ``per_dst + 1``-th SYN inside one of the program's 1 s windows);
- ``attack_started`` for the victim: the detection latency (the event after the
  crossing), and whether the victim is the true one;
- ``attack_ended``: how long after the flood's last SYN;
- false alarms: ``attack_started`` for any other destination, or before the flood.

``benign_run`` replays benign traffic alone (default 300 s) with a surge of new flows (a
burst of complete handshakes to many servers, each far below ``per_dst``, and in all
above flow_watch's ``flow_threshold``: it enables syn_flood, which must report nothing),
once with the shipped specs (syn_flood on demand) and once with syn_flood always on, and
counts the false alarms, the enables, and the user-space time of the ASL handlers
(``HandlerStats.handler_ns``) and of the whole replay process (``time.process_time``).
"""

from __future__ import annotations

import ipaddress
import random
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.demo.scenario import S, crossing_ns
from runtime.demo.traffic import benign_mix
from runtime.traffic import frames as F

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
T0 = 1_767_225_600 * S                 # 2026-01-01T00:00:00Z: the captures' clock
VICTIM = "198.19.0.80"
BEFORE_S, AFTER_S = 10, 5
REAL_SOURCES = 8
POOL = 65_536


def _tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 1, ack: int = 0) -> bytes:
    """An Ethernet/IPv4/TCP frame without payload, exact checksums (struct, not scapy:
    hundreds of thousands are built per run)."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, s, d))
    struct.pack_into("!H", ip, 10, F._csum(bytes(ip)))
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0))
    struct.pack_into("!H", tcp, 16, F._csum(s + d + struct.pack("!BBH", 0, 6, 20) + bytes(tcp)))
    return bytes.fromhex("020000000001020000000002") + b"\x08\x00" + bytes(ip) + bytes(tcp) + bytes(6)


SYN, SYNACK, ACK = 0x02, 0x12, 0x10


def flood(rate: float, seconds: float, start_ns: int, kind: str, seed: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    if kind == "spoofed":
        pool = [_tcp(f"198.18.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", VICTIM, rnd.randrange(1024, 65535),
                     80, SYN, rnd.randrange(1 << 32)) for _ in range(POOL)]
        pick = lambda i: pool[rnd.randrange(POOL)]          # noqa: E731
    elif kind == "real":
        srcs = [f"198.18.{200 + i}.{10 + i}" for i in range(REAL_SOURCES)]
        pool = [_tcp(srcs[i % REAL_SOURCES], VICTIM, 1024 + i, 80, SYN, i) for i in range(REAL_SOURCES * 64)]
        pick = lambda i: pool[i % len(pool)]                 # noqa: E731
    else:
        raise ValueError(f"kind is spoofed or real, not {kind!r}")
    n = int(rate * seconds)
    return [(start_ns + int(i * S / rate), pick(i)) for i in range(n)]


def surge(start_ns: int, seconds: float, flows_per_s: int, servers: int, seed: int) -> list[tuple[int, bytes]]:
    """Complete handshakes (SYN, SYN/ACK, ACK) of new connections, ``flows_per_s`` a
    second spread over ``servers`` servers (198.19.1.0/24 onwards): many new flows, few
    SYNs per destination."""
    rnd = random.Random(seed)
    out = []
    n = int(flows_per_s * seconds)
    for i in range(n):
        t = start_ns + int(i * S / flows_per_s)
        c = f"198.18.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        srv = f"198.19.{1 + (i % servers) // 250}.{1 + (i % servers) % 250}"
        sp, cs, ss = rnd.randrange(1024, 65535), rnd.randrange(1 << 32), rnd.randrange(1 << 32)
        out += [(t, _tcp(c, srv, sp, 443, SYN, cs)), (t + 200_000, _tcp(srv, c, 443, sp, SYNACK, ss, cs + 1)),
                (t + 400_000, _tcp(c, srv, sp, 443, ACK, cs + 1, ss + 1))]
    return out


def benign(seconds: float, seed: int) -> list[tuple[int, bytes]]:
    return [(T0 + off, f) for off, f in benign_mix(seconds, seed)]


@dataclass
class Replayed:
    """What one replay gave."""
    asl_events: list[dict]
    events: list[dict]                   # the program's records
    enabled_at: list[int]                # ticks (capture ns) at which syn_flood was enabled
    ticks: list[int]
    handler_ns: dict[str, int]
    delivered: dict[str, int]
    process_s: float                     # CPU time of this process for the replay (user + sys)
    user_s: float
    frames: int
    params: dict = field(default_factory=dict)


def spec_texts(variant: str) -> dict[str, str]:
    """The specs of ``variant``: "on_demand" (as shipped), "always" (syn_flood always on,
    flow_watch's enables made alerts: the same detector without its trigger)."""
    texts = {p.name: p.read_text() for p in sorted(SPECS.glob("*.mon"))}
    if variant == "always":
        texts["syn_flood.mon"] = texts["syn_flood.mon"].replace("mode on_demand", "mode always")
        fw = texts["flow_watch.mon"].replace("enable syn_flood for 60s", 'alert "trigger"')
        if fw == texts["flow_watch.mon"] or "mode always" not in texts["syn_flood.mon"]:
            raise ValueError("specs/ changed: update benchmarks/flood_accuracy.py spec_texts()")
        texts["flow_watch.mon"] = fw
    elif variant != "on_demand":
        raise ValueError(variant)
    return texts


def compile_variant(variant: str):
    from compiler.driver import compile_files
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, text in spec_texts(variant).items():
            (Path(d) / name).write_text(text)
            paths.append(str(Path(d) / name))
        import os
        cwd = os.getcwd()
        os.chdir(ROOT)                    # the specs name their ASL relative to the checkout
        try:
            return compile_files(paths, replay=True)
        finally:
            os.chdir(cwd)


def replay(art, frames: list[tuple[int, bytes]], asl_options: dict | None = None) -> Replayed:
    """``frames`` (sorted by time) through the kernel program ``art`` with the ASL."""
    import os

    from runtime.asl.host import AslHost
    from runtime.capture.pcap import Frame
    from runtime.control.blocklist import Blocklist
    from runtime.control.controller import Controller
    from runtime.engines import open_engine
    from runtime.engines.replay import Replay
    from runtime.export.events import EventWriter

    cwd = os.getcwd()
    os.chdir(ROOT)
    eng = open_engine("kernel", art)
    try:
        clock = lambda: eng.stats.last_ts                    # noqa: E731
        ctl = Controller(art.manifest, eng.maps, clock,
                         blocklist=Blocklist.for_program(art.manifest, eng.maps, clock))
        with open(os.devnull, "w") as null:
            out = EventWriter(stream=null, interfaces=(), clock=clock, keep=True)
            host = AslHost(art.manifest, art.stubs, controller=ctl, events=out, snapshot=eng.app_snapshot,
                           clock=clock, options=asl_options or {})
            host.start()
            enabled_at, ticks = [], []

            def tick():
                host.tick()
                now = clock()
                ticks.append(now)
                if ctl.enabled().get("syn_flood", {}).get("enabled"):
                    enabled_at.append(now)
            rep = Replay(eng, host.deliver, on_tick=tick, keep_events=True)
            c0, u0 = time.process_time(), os.times().user
            rep.feed(Frame(i, ts, data) for i, (ts, data) in enumerate(frames))
            rep.flush()
            tick()
            host.stop()
            c1, u1 = time.process_time(), os.times().user
        ran = eng.snapshot()["counters"]["frames"]
        if ran != len(frames):            # every frame of the capture went through the program
            raise RuntimeError(f"the program ran {ran:,} frames of {len(frames):,}")
        st = host.stats()
        return Replayed(list(out.written), list(rep.events), enabled_at, ticks,
                        {a: v["handler_ns"] for a, v in st.items()}, {a: v["delivered"] for a, v in st.items()},
                        c1 - c0, u1 - u0, len(frames), ctl.params())
    finally:
        eng.close()
        os.chdir(cwd)


@dataclass
class FloodResult:
    seed: int
    kind: str
    rate: float
    phase_s: float                        # where in its window the flood began
    crossing_s: float | None              # from the flood's start
    reported_s: float | None
    latency_s: float | None               # reported - crossing
    victim_ok: bool
    end_lag_s: float | None               # attack_ended after the flood's last SYN
    false_alarms: int
    enabled_s: float | None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def flood_run(art, seed: int, kind: str, rate: float, flood_s: float, benign_cache: dict) -> FloodResult:
    total = BEFORE_S + flood_s + AFTER_S
    if (seed, total) not in benign_cache:
        benign_cache[(seed, total)] = benign(total, seed)
    # where in the program's 1 s window the flood begins decides when a window first holds
    # more than per_dst of its SYNs: a phase drawn per run, so the runs cover the worst case
    phase = random.Random(f"{seed}-{kind}-{rate}").randrange(S)
    start = T0 + BEFORE_S * S + phase
    frames = sorted(benign_cache[(seed, total)] + flood(rate, flood_s, start, kind, seed), key=lambda x: x[0])
    r = replay(art, frames)
    per_dst = r.params["syn_flood"]["per_dst"]
    cross = crossing_ns(start, rate, per_dst)
    last = start + int((int(rate * flood_s) - 1) * S / rate)
    started = [e for e in r.asl_events if e["app"] == "syn_flood" and e["kind"] == "attack_started"]
    true = [e for e in started if e["fields"]["victim"] == VICTIM and e["fields"]["started_ns"] >= start]
    false = [e for e in started if e not in true]
    ended = [e for e in r.asl_events if e["app"] == "syn_flood" and e["kind"] == "attack_ended"
             and e["fields"]["victim"] == VICTIM]
    en = [e for e in r.asl_events if e["app"] == "flow_watch" and e["kind"] == "enabled"]
    rep = true[0]["time_ns"] if true else None
    return FloodResult(seed, kind, rate, round(phase / S, 4), round((cross - start) / S, 4),
                       round((rep - start) / S, 4) if rep else None,
                       round((rep - cross) / S, 4) if rep else None, bool(true), 
                       round((ended[0]["time_ns"] - last) / S, 4) if ended and true else None, len(false),
                       round((en[0]["fields"]["at_ns"] - start) / S, 4) if en else None)


def benign_run(arts: dict, seconds: float, seed: int, surge_at_s: float, surge_s: float, surge_flows: int,
               surge_servers: int) -> dict:
    frames = benign(seconds, seed)
    frames += surge(T0 + int(surge_at_s * S), surge_s, surge_flows, surge_servers, seed)
    frames.sort(key=lambda x: x[0])
    out = {"seconds": seconds, "frames": len(frames), "surge": {"at_s": surge_at_s, "seconds": surge_s,
                                                                "flows_per_s": surge_flows, "servers": surge_servers}}
    for variant, art in arts.items():
        r = replay(art, frames)
        alarms = [e for e in r.asl_events if e["app"] == "syn_flood" and e["kind"] == "attack_started"]
        enables = [e for e in r.events if e["type"] == "enable"]
        out[variant] = {"false_alarms": len(alarms), "enables": len(enables),
                        "enabled_ticks": len(r.enabled_at) if variant == "on_demand" else len(r.ticks),
                        "syn_flood_records": r.delivered.get("syn_flood", 0),
                        "syn_flood_handler_ms": r.handler_ns.get("syn_flood", 0) / 1e6,
                        "asl_handler_ms": sum(r.handler_ns.values()) / 1e6,
                        "process_cpu_s": round(r.process_s, 3), "user_cpu_s": round(r.user_s, 3)}
    return out
