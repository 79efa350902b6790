"""What a demo sends and when: the ground truth its timeline is measured against.

Times are offsets from the start of the benign traffic. The benign traffic runs for the
whole ``duration_s``; the flood starts at ``attack_at_s`` and lasts ``attack_for_s``, at
``rate_pps`` SYNs a second to ``victim`` port 80, each from the next address of
``flood_net`` (spoofed sources, in turn: ``flood_sources`` of them). Every address is in
198.18.0.0/15; the benign clients are in 198.18.0.0/16 and the servers in 198.19.0.0/24,
so no benign host is inside ``flood_net``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass

S = 1_000_000_000
BENCH_NET = ipaddress.ip_network("198.18.0.0/15")
MAX_DURATION_S = 600
MAX_RATE_PPS = 2_000_000
MAX_FLOOD_FRAMES = 100_000_000


class ScenarioError(ValueError):
    """A demo that cannot run as asked; the message says why and what would."""


@dataclass(frozen=True)
class Scenario:
    duration_s: float = 60.0
    attack_at_s: float = 10.0
    attack_for_s: float = 20.0
    rate_pps: int = 200_000
    enforce: bool = False
    seed: int = 42
    victim: str = "198.19.0.80"
    flood_net: str = "198.19.128.0/20"
    benign_flows_per_s: int = 40          # TCP connections a second (8 frames each); as many DNS exchanges

    def __post_init__(self):
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ScenarioError(f"--duration must be more than 0 and at most {MAX_DURATION_S} s, not {self.duration_s:g}")
        if not 0 <= self.attack_at_s < self.duration_s:
            raise ScenarioError(f"--attack-at {self.attack_at_s:g} s is not inside the demo's {self.duration_s:g} s")
        if self.attack_for_s <= 0:
            raise ScenarioError(f"--attack-for must be more than 0 s, not {self.attack_for_s:g}")
        if self.attack_at_s + self.attack_for_s > self.duration_s:
            raise ScenarioError(f"the flood ({self.attack_at_s:g} s + {self.attack_for_s:g} s) must end within "
                                f"--duration {self.duration_s:g} s: shorten it or make the demo longer")
        if not 1_000 <= self.rate_pps <= MAX_RATE_PPS:
            raise ScenarioError(f"--rate must be 1k..{MAX_RATE_PPS // 1000:,}k SYN/s, not {self.rate_pps:,}")
        if self.flood_frames > MAX_FLOOD_FRAMES:
            raise ScenarioError(f"{self.flood_frames:,} flood frames: at most {MAX_FLOOD_FRAMES:,} "
                                f"(lower --rate or --attack-for)")
        net = ipaddress.ip_network(self.flood_net)
        if not net.subnet_of(BENCH_NET) or ipaddress.ip_address(self.victim) not in BENCH_NET:
            raise ScenarioError(f"the demo sends inside {BENCH_NET} only")

    @property
    def flood_frames(self) -> int:
        return int(self.rate_pps * self.attack_for_s)

    @property
    def flood_sources(self) -> int:
        return ipaddress.ip_network(self.flood_net).num_addresses

    @property
    def flood_first_source(self) -> str:
        return str(ipaddress.ip_network(self.flood_net).network_address)

    def to_json(self) -> dict:
        return {**asdict(self), "flood_frames": self.flood_frames, "flood_sources": self.flood_sources}


def parse_rate(text: str) -> int:
    """``200k``, ``1.5M`` or ``50000`` SYN/s."""
    t = text.strip().lower().removesuffix("pps").removesuffix("/s")
    mult = 1
    if t.endswith("k"):
        mult, t = 1_000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise ScenarioError(f"--rate {text!r} is not a rate (e.g. 200k, 1.5M, 50000)") from None
    return int(v)


def crossing_ns(first_ns: int, rate_pps: float, threshold: int, window_ns: int = S) -> int:
    """When a flood that began at ``first_ns`` (program clock) at ``rate_pps`` first has more
    than ``threshold`` frames inside one window of the program (windows are multiples of
    ``window_ns`` of the clock): the moment its rate crossed a per-window threshold."""
    need = threshold + 1                               # the count must pass the threshold
    per = window_ns / rate_pps                         # ns between two frames
    w0 = first_ns // window_ns * window_ns
    if (w0 + window_ns - first_ns) > (need - 1) * per:  # the (need)-th frame is still in the first window
        return int(first_ns + (need - 1) * per)
    # else: from the next window on, a whole window of frames: the (need)-th of that window
    k = 1
    while True:
        start = w0 + k * window_ns
        n0 = -(-(start - first_ns) // per)             # the first frame in that window
        t = first_ns + (n0 + need - 1) * per
        if t < start + window_ns:
            return int(t)
        k += 1
        if k > 10:
            raise ValueError(f"{rate_pps:g} frames/s never pass {threshold} in a window")
