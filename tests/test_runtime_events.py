"""The runtime's own events (runtime/monitor/runtime_events.py, enable_watch.py) on the
replay build of a program, on both engines, on the capture clock: an on-demand app
enabled by its trigger (the kernel's record), by ctl and by a handler, its time pushed
further by the trigger while on (no event), its expiry found by the interval's read with
the exact time it ran out, an enable whose record never came found by two reads; block
added, renewed, refused, expired, removed; a param set; the kernel's alerts. Exact
events, in order, each valid by examples/events.schema.json (tests/conftest.py)."""

from __future__ import annotations

import io
import json

import pytest

from engine_helpers import S, udp
from runtime.asl.host import AslHost
from runtime.control.blocklist import Blocklist
from runtime.control.controller import ControlError, Controller
from runtime.export.events import EventWriter, rfc3339
from runtime.monitor.runtime_events import RuntimeEvents

SPEC = """app trig {
  t1 { select udp }
  t2 { n = count() window 1s }
  t3 { when n > param limit = 3 { enable det for 2s } }
}
app det {
  mode on_demand
  t1 { select udp }
  t2 { c = count() }
  t3 { when c > 0 { alert "seen" limit 1/s } }
}
"""
WALL = 1_700_000_000 * S            # the wall clock is the program's clock plus this


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def at(ns: int) -> str:
    return rfc3339(WALL + ns)


@pytest.fixture
def rig(engine):
    eng = engine(SPEC)
    clock = Clock()
    bl = Blocklist.for_program(eng.manifest, eng.maps, clock, allow=["198.18.0.0/24"])
    ctl = Controller(eng.manifest, eng.maps, clock, blocklist=bl)
    out = io.StringIO()
    writer = EventWriter(stream=out, host="h", interfaces=["mon"], instance="t", clock=lambda: WALL + clock.t)
    rt = RuntimeEvents(writer, clock, offset=lambda: WALL)
    rt.watch_controller(ctl)
    host = AslHost(eng.manifest, engine.arts[-1].stubs, controller=ctl, events=writer, snapshot=eng.app_snapshot,
                   clock=clock, records=rt.record)
    host.start()

    class Rig:
        def frames(self, t0: int, n: int, deliver: bool = True):
            for i in range(n):
                clock.t = t0 + i * 1000
                eng.run_frame(clock.t, udp())
            evs = eng.events.take()
            if deliver:
                host.deliver(evs)

        def poll(self, t: int):
            clock.t = t
            ctl.sweep()
            rt.poll()

        def events(self):
            return [(e["app"], e["kind"], e["severity"], e["fields"]) for e in map(json.loads, out.getvalue().splitlines())]

    r = Rig()
    r.clock, r.ctl, r.eng = clock, ctl, eng
    return r


def test_enable_and_disable_events_exact(rig):
    r = rig
    r.frames(1 * S, 5)                    # the 4th frame passes n > 3: det on for 2 s; the 5th, det's alert
    trig_at = 1 * S + 3000
    r.poll(int(2.5 * S))                  # on: nothing
    r.frames(int(2.9 * S), 5)             # the trigger again, det on: its time pushed to 2.9 s + 4 us + 2 s
    r.poll(int(3.5 * S))                  # past the first time, on still: nothing
    pushed = int(2.9 * S) + 4000 + 2 * S
    r.poll(5 * S)                         # off: expired, at the time it ran out
    r.clock.t = 6 * S
    r.ctl.enable("det", "1s", by="ctl")
    r.clock.t = int(6.5 * S)
    r.ctl.disable("det", by="ctl")
    r.ctl.disable("det", by="ctl")        # off already: no change, no event
    r.frames(8 * S, 5, deliver=False)     # a trigger whose record is never delivered
    r.poll(int(8.2 * S))                  # found on: told at the next read, unless its record comes
    r.poll(int(8.4 * S))
    r.poll(11 * S)
    r.clock.t = 12 * S
    r.ctl.enable("det", by="asl:trig")    # until disabled
    r.poll(13 * S)
    assert [e for e in r.events() if e[1] != "alert"] == [
        ("xdpmon", "app_enabled", "info", {"app": "det", "cause": "trigger", "by": "rule:trig.r0", "rule": "trig.r0",
                                           "changed_at": at(trig_at), "until": at(trig_at + 2 * S), "for_ns": 2 * S}),
        ("xdpmon", "app_disabled", "info", {"app": "det", "cause": "expired", "by": None, "changed_at": at(pushed)}),
        ("xdpmon", "app_enabled", "info", {"app": "det", "cause": "ctl", "by": "ctl", "rule": None,
                                           "changed_at": at(6 * S), "until": at(7 * S), "for_ns": S}),
        ("xdpmon", "app_disabled", "info", {"app": "det", "cause": "ctl", "by": "ctl", "changed_at": at(int(6.5 * S))}),
        ("xdpmon", "app_enabled", "info", {"app": "det", "cause": "trigger", "by": "rule:trig.r0", "rule": "trig.r0",
                                           "changed_at": None, "until": at(8 * S + 4000 + 2 * S), "for_ns": None}),
        ("xdpmon", "app_disabled", "info", {"app": "det", "cause": "expired", "by": None,
                                            "changed_at": at(8 * S + 4000 + 2 * S)}),
        ("xdpmon", "app_enabled", "info", {"app": "det", "cause": "asl", "by": "asl:trig", "rule": None,
                                           "changed_at": at(12 * S), "until": None, "for_ns": None}),
    ]
    # det's alert: once in each second it ran (limit 1/s), on the frames after the enabling one
    assert [e for e in r.events() if e[1] == "alert"] == [
        ("det", "alert", "warning", {"message": "seen", "rule": "det.r0", "ts_ns": 1 * S + 4000}),
        ("det", "alert", "warning", {"message": "seen", "rule": "det.r0", "ts_ns": int(2.9 * S)}),
    ]


def test_an_expiry_before_a_new_trigger_is_told_first(rig):
    """det ran out at 3 s unseen (no read between); the trigger at 4 s finds it off: the
    record tells the expiry first, then the new enable."""
    r = rig
    r.frames(1 * S, 4)
    r.frames(4 * S, 4)
    assert [(k, f["cause"], f["changed_at"]) for _, k, _, f in r.events()] == [
        ("app_enabled", "trigger", at(1 * S + 3000)), ("app_disabled", "expired", at(3 * S + 3000)),
        ("app_enabled", "trigger", at(4 * S + 3000))]


def test_block_and_param_events_exact(rig):
    r = rig
    r.clock.t = 1 * S
    r.ctl.block("198.18.7.0/24", "2s", "scan", by="ctl")
    r.clock.t = 2 * S
    r.ctl.block("198.18.7.0/24", "3s", "scan again", by="asl:det")
    with pytest.raises(ControlError):
        r.ctl.block("198.18.0.9", "1m", by="asl:det")          # allowed: refused
    r.ctl.block("198.19.0.0/16", "10s", by="ctl")
    r.poll(int(5.5 * S))                                         # the /24 ran out at 5 s
    r.clock.t = 6 * S
    r.ctl.unblock("198.19.0.0/16", by="ctl")
    r.ctl.set_param("trig", "limit", "2k", by="reload")
    block = {"action": "would drop", "hits": 0}
    assert r.events() == [
        ("xdpmon", "block_added", "notice", {"prefix": "198.18.7.0/24", **block, "ttl_ns": 2 * S, "expires": at(3 * S),
                                             "reason": "scan", "by": "ctl", "added_by": "ctl"}),
        ("xdpmon", "block_renewed", "notice", {"prefix": "198.18.7.0/24", **block, "ttl_ns": 3 * S,
                                               "expires": at(5 * S), "reason": "scan again", "by": "asl:det",
                                               "added_by": "asl:det"}),
        ("xdpmon", "block_refused", "warning", {"prefix": "198.18.0.9", "by": "asl:det",
                                                "why": "cannot block 198.18.0.9/32: it is inside the allowed prefix "
                                                       "198.18.0.0/24 (--allow); allowed prefixes are never blocked"}),
        ("xdpmon", "block_added", "notice", {"prefix": "198.19.0.0/16", **block, "ttl_ns": 10 * S,
                                             "expires": at(12 * S), "reason": "", "by": "ctl", "added_by": "ctl"}),
        ("xdpmon", "block_expired", "notice", {"prefix": "198.18.7.0/24", **block, "ttl_ns": 0, "expires": at(5 * S),
                                               "reason": "scan again", "by": None, "added_by": "asl:det"}),
        ("xdpmon", "block_removed", "notice", {"prefix": "198.19.0.0/16", **block, "ttl_ns": 6 * S,
                                               "expires": at(12 * S), "reason": "", "by": "ctl", "added_by": "ctl"}),
        ("xdpmon", "param_set", "info", {"app": "trig", "param": "limit", "value": 2000, "by": "reload"}),
    ]
