"""What `xdpmon run` shows a person each interval (runtime/ui/live_view.py): the
rich screen and the plain line, rendered from a real reading (the kernel program,
capture clock) and compared exactly."""

from __future__ import annotations

import pytest
from rich.console import Console

from engine_helpers import S, EngineMaker, udp
from runtime.monitor.reading import Reader
from runtime.ui.live_view import plain_line, render_reading

pytestmark = [pytest.mark.kernel]

SPEC = """app acct {
  t1 { select ip }
  t2 { per_dst = count() as packets, sum(pkt.len) as bytes by ip.dst }
}
app od {
  mode on_demand
  t1 { select udp }
  t2 { n = count() by ip.dst }
  t3 { when n > param hot = 3 { send packet(ip.src) to asl limit 10/s } }
}
"""

STATUS = {"name": "edge1", "uptime_s": 42, "interfaces": [{"name": "mon", "mode": "native"}],
          "enabled": {"acct": {"mode": "always", "enabled": True},
                      "od": {"mode": "on_demand", "enabled": True, "until_ns": 34 * S}},
          "blocks": 1, "enforce": False}


# per_dst (a value per CPU) and od.n (read by od's rule) are two maps of one key (compiler/percpu.py).
# per_dst ranked by packets (its first value), ties in key order; rates over the 2 s since the
# last reading; od on until 34 s (now 3 s); its rule fired for frames 4..10 towards 198.18.0.1
SCREEN = """\
xdpmon edge1  on mon (native)  up 42s
frames 15 (6.0/s)  pass 15  drop 0
parse: ok 15
filters: 1 entry (log only)  would drop 0  dropped 0
╭─ acct  always on; no params ─────────────────────────────────────────────────────────────────────╮
│ per_dst (top 3 of 6 keys)                                                                        │
│ ┏━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━┓                                           │
│ ┃ ip.dst     ┃ packets ┃ bytes ┃ packets/s ┃ bytes/s ┃                                           │
│ ┡━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━┩                                           │
│ │ 198.18.0.1 │      10 │   420 │     4.0/s │ 168.0/s │                                           │
│ │ 198.18.0.2 │       1 │    42 │     0.0/s │   0.0/s │                                           │
│ │ 198.18.0.3 │       1 │    42 │     0.5/s │  21.0/s │                                           │
│ └────────────┴─────────┴───────┴───────────┴─────────┘                                           │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
╭─ od  on for 31s more; hot=3 ─────────────────────────────────────────────────────────────────────╮
│ n (top 3 of 6 keys)                                                                              │
│ ┏━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━┓                                                                 │
│ ┃ ip.dst     ┃ count ┃ count/s ┃                                                                 │
│ ┡━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━┩                                                                 │
│ │ 198.18.0.1 │    10 │   4.0/s │                                                                 │
│ │ 198.18.0.2 │     1 │   0.0/s │                                                                 │
│ │ 198.18.0.3 │     1 │   0.5/s │                                                                 │
│ └────────────┴───────┴─────────┘                                                                 │
│ rules fired: r0 7; events 7 (3.5/s); ring full 0; queue dropped 0; rate-limited 0                │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
map fill
┏━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━┓
┃ map      ┃ statistics   ┃    entries ┃ fill ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━┩
│ m_39a6d1 │ acct.per_dst │ 6 / 16,384 │   0% │
│ m_cd24c8 │ od.n         │ 6 / 16,384 │   0% │
└──────────┴──────────────┴────────────┴──────┘"""


@pytest.fixture
def two_readings(tmp_path, kernel):
    m = EngineMaker("kernel", tmp_path)
    eng = m(SPEC)
    eng.maps.set_enabled("od", 1 << 62)                 # on: od's rule can fire
    clock = {"now": S}
    r = Reader(eng.manifest, eng.maps, lambda: clock["now"])
    t = S
    for dst, n in {"198.18.0.1": 2, "198.18.0.2": 1}.items():
        for _ in range(n):
            eng.run_frame(t, udp(dst=dst))
            t += 1000
    r.read()
    for dst, n in {"198.18.0.1": 8, "198.18.0.3": 1, "198.18.0.4": 1, "198.18.0.5": 1, "198.18.0.6": 1}.items():
        for _ in range(n):
            eng.run_frame(t, udp(dst=dst))
            t += 1000
    clock["now"] = 3 * S
    yield eng, r.read()
    m.close()


def test_screen(two_readings):
    eng, reading = two_readings
    con = Console(record=True, width=100, color_system=None)
    con.print(render_reading(reading, eng.manifest, STATUS, top=3))
    text = "\n".join(line.rstrip() for line in con.export_text().splitlines())
    assert text == SCREEN


def test_plain_line(two_readings):
    eng, reading = two_readings
    # 12 frames in the 2 s since the last reading; od's rule fired for frames 4..10 to 198.18.0.1
    assert plain_line(reading, STATUS) == ("xdpmon edge1: up 42s frames 15 (6/s) pass 15 drop 0 events 7 "
                                           "event drops 0 blocks 1 on-demand on: od")
