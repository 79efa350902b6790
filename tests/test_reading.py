"""What one interval of a running instance shows (runtime/monitor/reading.py):
the largest keys when a map holds many, per-second rates of growing members,
counter deltas, fill levels and warnings; on the kernel (replay build, capture
clock) with exact values."""

from __future__ import annotations

import pytest

from engine_helpers import S, EngineMaker, udp
from runtime.monitor.reading import Reader

pytestmark = [pytest.mark.kernel]

SPEC = """app acct {
  t1 { select ip }
  t2 { per_dst = count() as packets, sum(pkt.len) as bytes by ip.dst size 8 }
}
"""


@pytest.fixture
def make(tmp_path, kernel):
    m = EngineMaker("kernel", tmp_path)
    yield m
    m.close()


def feed(eng, counts: dict, t0: int) -> None:
    t = t0
    for dst, n in counts.items():
        for _ in range(n):
            eng.run_frame(t, udp(dst=dst))
            t += 1000


def test_largest_keys_rates_and_warnings(make):
    eng = make(SPEC)
    clock = {"now": 0}
    r = Reader(eng.manifest, eng.maps, lambda: clock["now"], keys_limit=2)
    feed(eng, {"198.18.0.1": 1, "198.18.0.2": 2, "198.18.0.3": 3, "198.18.0.4": 4, "198.18.0.5": 5}, S)
    clock["now"] = 2 * S
    a = r.read()
    app = a.snapshot["apps"]["acct"]
    assert app["keys_listed"] == {"per_dst": {"listed": 2, "keys": 5, "by": "packets"}}
    assert [e["key"]["ip.dst"] for e in app["stats"]["per_dst"]] == ["198.18.0.4", "198.18.0.5"]
    assert a.rates == {} and a.interval_s == 0.0
    frame_len = len(udp())
    feed(eng, {"198.18.0.5": 10, "198.18.0.1": 20, "198.18.0.6": 1, "198.18.0.7": 1, "198.18.0.8": 1,
               "198.18.0.9": 1}, 3 * S)
    clock["now"] = 4 * S                                   # 2 s later
    b = r.read()
    app = b.snapshot["apps"]["acct"]
    assert [e["key"]["ip.dst"] for e in app["stats"]["per_dst"]] == ["198.18.0.1", "198.18.0.5"]
    assert app["keys_listed"]["per_dst"]["keys"] == 8       # the ninth key found the map full
    # 198.18.0.5 was listed both times: 10 packets in 2 s; 198.18.0.1 is new to the list: no rate yet
    assert b.rates == {"acct": {"per_dst": {"ip.dst=198.18.0.5": {"packets": 5.0, "bytes": 5.0 * frame_len}}}}
    assert b.interval_s == 2.0
    assert b.counters_delta["frames"] == 34 and b.counter_rates["frames"] == 17.0
    name = eng.manifest.raw["maps"][0]["name"]
    assert b.fill[name] == {"entries": 8, "size": 8, "fill": 1.0, "stats": ["acct.per_dst"]}
    assert b.warnings == [f"map {name} (acct.per_dst) is 100% full (8 of 8 entries)",
                          f"map {name} is full: 1 new keys not counted this interval (map.{name}.insert_failed)"]


def test_every_key_without_a_limit(make):
    eng = make(SPEC)
    r = Reader(eng.manifest, eng.maps, lambda: 2 * S, keys_limit=None)
    feed(eng, {"198.18.0.1": 1, "198.18.0.2": 2, "198.18.0.3": 3}, S)
    app = r.read().snapshot["apps"]["acct"]
    assert "keys_listed" not in app
    assert {e["key"]["ip.dst"]: e["value"]["packets"] for e in app["stats"]["per_dst"]} == \
        {"198.18.0.1": 1, "198.18.0.2": 2, "198.18.0.3": 3}
