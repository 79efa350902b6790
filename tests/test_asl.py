"""The ASL host: handlers receive typed events, in capture order in a replay and as
records arrive live; bounded queues drop and count; a raising handler is
contained; the context changes the program; emitted events are JSON lines.

Live tests load the live build and run frames through it with BPF_PROG_TEST_RUN
(the program's records go to its ring buffer as they would on an interface),
while the host's consumer thread polls the ring buffer for real.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from compiler.driver import compile_files
from engine_helpers import S, tcp, udp
from runtime.abi.manifest import Manifest
from runtime.abi.records import EventDecoder, addr_text, decode_fields
from runtime.asl.context import StatError
from runtime.asl.host import AslHost, AslLoadError
from runtime.asl.queues import AppQueue
from runtime.export.events import EventWriter, rfc3339

ROOT = Path(__file__).resolve().parent.parent


def compile_spec(tmp_path, spec: str, replay: bool = True, name: str = "spec.mon"):
    path = tmp_path / name
    path.write_text(spec)
    return compile_files([str(path)], replay=replay)


def handler_file(tmp_path, name: str, text: str) -> str:
    p = tmp_path / f"{name}.py"
    p.write_text(text)
    return str(p)


def wait_for(cond, what: str, timeout: float = 20.0):
    """Wait until ``cond()`` holds (a bound against hanging, not a timing assertion)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


# ---- records decoded -------------------------------------------------------------------------

KINDS_SPEC = """app k {
  t1 { select ip }
  t3 { when pkt.len > 0 {
    send packet(ip.src, ip.dst, eth.src, ipv4.src, ipv6.dst, tcp.syn, tcp.dport, vlan.id, pkt.len, ip.proto)
      to asl
  } }
}
"""


def test_event_decoder_is_decode_fields_on_every_kind(tmp_path):
    """The compiled decoder gives what the member-by-member decoder gives, on random
    records (every byte random) and on addresses of every special form."""
    man = Manifest.of(compile_spec(tmp_path, KINDS_SPEC).manifest)
    (ev,) = [e for e in man.events.values() if e.type == "packet"]
    dec = EventDecoder(man)
    rnd = random.Random(7)
    head = ev.action.to_bytes(4, "little")
    for _ in range(2000):
        body = bytearray(rnd.randbytes(ev.record["size"]))
        body[8:12] = head
        got = dec(bytes(body))
        assert got["fields"] == decode_fields(ev.record, bytes(body))
        assert (got["app"], got["type"], got["action"]) == ("k", "packet", ev.action)
        assert list(got["fields"]) == [m["field"] for m in ev.record["members"] if m["role"] == "field"]


@pytest.mark.parametrize("text", ["::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:0:1.2.3.4", "1::",
                                  "2001:2::", "2001:2:0:0:1::1", "2001:0:0:1::1", "fe80::1:0:0:1", "1:0:1:0:1:0:1:0",
                                  "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::0.0.0.2", "::ffff:0.0.0.0"])
def test_ipv6_text_is_ipaddress(text):
    b = ipaddress.IPv6Address(text).packed
    assert addr_text("ip6", b) == str(ipaddress.IPv6Address(b))
    want = str(ipaddress.IPv4Address(b[12:])) if b[:12] == bytes(10) + b"\xff\xff" else str(ipaddress.IPv6Address(b))
    assert addr_text("ip", b) == want


def test_unknown_action_is_a_clear_error(tmp_path):
    dec = EventDecoder(compile_spec(tmp_path, KINDS_SPEC).manifest)
    with pytest.raises(ValueError, match="a ring buffer record of action 7, which this program does not have"):
        dec(bytes(8) + (7).to_bytes(4, "little") + bytes(60))


# ---- emitted events --------------------------------------------------------------------------

def test_emit_json_line_schema_exact():
    out = io.StringIO()
    w = EventWriter(stream=out, host="r1", interfaces=["eth0", "eth1"], instance="edge",
                    clock=lambda: 1_714_564_800_123_456_789)
    w.write("syn_flood", "victim", {"victim": "198.19.0.80", "port": 80, "raw": b"\x01\xff", "set": {3, 1},
                                    "nested": {"a": [1, 2]}, "none": None, "flag": True})
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    ev = json.loads(line)
    assert list(ev) == ["time", "time_ns", "host", "interfaces", "interface", "instance", "app", "kind",
                        "severity", "fields"]
    assert ev == {"time": "2024-05-01T12:00:00.123456789Z", "time_ns": 1714564800123456789, "host": "r1",
                  "interfaces": ["eth0", "eth1"], "interface": None, "instance": "edge", "app": "syn_flood",
                  "kind": "victim", "severity": "info",
                  "fields": {"victim": "198.19.0.80", "port": 80, "raw": "01ff", "set": [1, 3],
                             "nested": {"a": [1, 2]}, "none": None, "flag": True}}
    assert rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    with pytest.raises(TypeError, match="an event's kind is a non-empty text"):
        w.write("a", "", {})


def test_alert_is_an_event_of_kind_alert_with_its_severity(tmp_path):
    from runtime.asl.context import AslContext

    out = io.StringIO()
    w = EventWriter(stream=out, host="r1", interfaces=["eth0"], instance="edge", clock=lambda: 1_714_564_800_0)
    ctx = AslContext(compile_spec(tmp_path, STATS_SPEC.replace("HANDLER_FILE", "x.py")).manifest, "a", writer=w,
                     clock=lambda: 77)
    ctx.alert("half open growing", pending=12_000)
    ctx.alert("flood", severity="critical")
    assert [(e["app"], e["kind"], e["severity"], e["fields"]) for e in map(json.loads, out.getvalue().splitlines())] == [
        ("a", "alert", "warning", {"message": "half open growing", "rule": None, "ts_ns": 77, "pending": 12000}),
        ("a", "alert", "critical", {"message": "flood", "rule": None, "ts_ns": 77})]
    assert ctx.emitted == 2
    with pytest.raises(ValueError, match="severity 'loud' is not one of critical, error, warning, notice, info, debug"):
        ctx.alert("x", severity="loud")
    with pytest.raises(TypeError, match="an alert's rule, ts_ns is its own: name the field otherwise"):
        ctx.alert("x", rule=1, ts_ns=2)
    with pytest.raises(TypeError, match=r"the kind 'alert' is for alerts: write ctx.alert\(message, severity=..., "):
        ctx.emit("alert", message="x")
    assert ctx.emitted == 2 and len(out.getvalue().splitlines()) == 2
    # an emitted event's severity is its own, not a field (info unless given)
    ctx.emit("attack_started", severity="critical", victim="198.19.0.80")
    ctx.emit("report", n=1)
    last = [json.loads(x) for x in out.getvalue().splitlines()[2:]]
    assert [(e["kind"], e["severity"], e["fields"]) for e in last] == [
        ("attack_started", "critical", {"victim": "198.19.0.80"}), ("report", "info", {"n": 1})]
    with pytest.raises(ValueError, match="severity 'loud' is not one of critical"):
        ctx.emit("x", severity="loud")
    assert ctx.emitted == 4


def test_emit_to_a_file_from_threads_whole_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(str(path), host="h", clock=lambda: 5)
    threads = [threading.Thread(target=lambda i=i: [w.write(f"app{i}", "k", {"n": n, "pad": "x" * 500})
                                                    for n in range(500)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 4000 and w.count == 4000
    per_app = {}
    for line in lines:
        ev = json.loads(line)
        per_app.setdefault(ev["app"], []).append(ev["fields"]["n"])
    assert per_app == {f"app{i}": list(range(500)) for i in range(8)}


# ---- queues ------------------------------------------------------------------------------------

def test_queue_drops_and_counts_exactly():
    q = AppQueue(5)
    assert [q.put(i) for i in range(8)] == [True] * 5 + [False] * 3
    q.put_control("tick")                      # never dropped, not counted against the bound
    assert (q.received, q.dropped, len(q), list(q.control)) == (8, 3, 5, ["tick"])
    with pytest.raises(ValueError, match="an app's queue holds at least one event"):
        AppQueue(0)


# ---- loading and the context, on the reference engine (no kernel) ---------------------------------

STATS_SPEC = """app a {
  t1 { select tcp }
  t2 { n = count()  per_dst = count() by ip.dst }
  t3 { when tcp.dport == 80 { send packet(ip.src, tcp.dport) to asl } }
  asl "HANDLER_FILE"
}
"""


def _host_for(tmp_path, spec, handler_text, engine="reference", blocklist=False, **kw):
    from runtime.control.blocklist import Blocklist
    from runtime.control.controller import Controller
    from runtime.engines import open_engine

    hf = handler_file(tmp_path, "h", handler_text)
    art = compile_spec(tmp_path, spec.replace("HANDLER_FILE", hf))
    eng = open_engine(engine, art)
    clock = lambda: eng.stats.last_ts       # noqa: E731
    ctl = Controller(art.manifest, eng.maps, clock,
                     blocklist=Blocklist.for_program(art.manifest, eng.maps, clock, allow=["198.18.0.128/25"])
                     if blocklist else None)
    out = io.StringIO()
    writer = EventWriter(stream=out, host="h", clock=lambda: eng.stats.last_ts)
    eng.test_controller = ctl
    host = AslHost(art.manifest, art.stubs, controller=ctl, events=writer, snapshot=eng.app_snapshot, **kw)
    return eng, host, out


def test_unknown_stat_lists_the_apps_stats(tmp_path):
    eng, host, _ = _host_for(tmp_path, STATS_SPEC, "class H:\n    def __init__(self, ctx): self.ctx = ctx\nHANDLER = H\n")
    ctx = host.workers["a"].handler.ctx
    with pytest.raises(StatError) as e:
        ctx.stats("nope")
    assert str(e.value) == "app 'a' has no statistic 'nope' (its statistics: n, per_dst)"
    assert ctx.stats("n") == {"value": {"count": 0}}
    with pytest.raises(TypeError):
        ctx.params["x"] = 1                      # read-only


def test_a_handler_that_cannot_load_is_a_clear_error(tmp_path):
    with pytest.raises(AslLoadError, match=r"the ASL handler of app 'a' \(.*h.py\) cannot be loaded: "
                                           r"ZeroDivisionError: division by zero \(.*h.py, line 1\)"):
        _host_for(tmp_path, STATS_SPEC, "1/0\n")
    with pytest.raises(AslLoadError, match="has no HANDLER class"):
        _host_for(tmp_path, STATS_SPEC, "x = 1\n")


def test_asl_options_are_checked(tmp_path):
    text = "class H:\n    def __init__(self, ctx): self.ctx = ctx\nHANDLER = H\n"
    with pytest.raises(ValueError, match=r"ASL options for 'b': no such app \(apps: a\)"):
        _host_for(tmp_path, STATS_SPEC, text, options={"b": {"queue": 3}})
    with pytest.raises(ValueError, match=r"ASL options of 'a': unknown size \(known: queue, enabled, options\)"):
        _host_for(tmp_path, STATS_SPEC, text, options={"a": {"size": 3}})
    _, host, _ = _host_for(tmp_path, STATS_SPEC, text, options={"a": {"queue": 3, "options": {"x": 1}}})
    assert host.workers["a"].queue.maxsize == 3 and dict(host.workers["a"].handler.ctx.options) == {"x": 1}
    _, host, _ = _host_for(tmp_path, STATS_SPEC, text, options={"a": {"enabled": False}})
    assert host.workers == {}


# ---- replay: capture order, interleaved with the frames ------------------------------------

RECORDER = """
import threading

class Recorder:
    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = []
        self.calls = []

    def on_start(self):
        self.calls.append(("start", threading.current_thread().name))

    def on_packet(self, event):
        self.seen.append((type(event).__name__, event.ts, event.ip_src, event.tcp_dport,
                          self.ctx.stats("n")["value"]["count"]))
        self.ctx.emit("seen", src=event.ip_src, n=self.ctx.stats("n")["value"]["count"])

    def on_tick(self):
        self.calls.append(("tick", threading.current_thread().name))

    def on_stop(self):
        self.calls.append(("stop", threading.current_thread().name))

HANDLER = Recorder
"""

# tcp.dport of each frame: events at frames 2, 3 and 6 (1-based), when n is 2, 3 and 6
DPORTS = [22, 80, 80, 22, 443, 80, 22]


def _frames():
    return [(S + i * 1000, tcp(src=f"198.18.0.{i + 1}", dport=p)) for i, p in enumerate(DPORTS)]


@pytest.mark.kernel
def test_replay_delivers_typed_events_in_capture_order_between_frames(tmp_path):
    """Each event reaches the handler after its frame and before the next: the
    statistic read then is its value at that frame."""
    from runtime.engines.replay import Replay

    eng, host, out = _host_for(tmp_path, STATS_SPEC, RECORDER, engine="kernel")
    try:
        host.start()
        rep = Replay(eng, host.deliver)
        rep.feed(type("F", (), {"ts_ns": ts, "data": data, "wire_len": None, "refused": None})()
                 for ts, data in _frames())
        host.tick()
        assert host.stop() == {"a": True}
        h = host.workers["a"].handler.obj
        assert h.seen == [("PacketEventR0A0", S + 1000, "198.18.0.2", 80, 2),
                          ("PacketEventR0A0", S + 2000, "198.18.0.3", 80, 3),
                          ("PacketEventR0A0", S + 5000, "198.18.0.6", 80, 6)]
        me = threading.current_thread().name
        assert h.calls == [("start", me), ("tick", me), ("stop", me)]
        assert [json.loads(line)["fields"] for line in out.getvalue().splitlines()] == [
            {"src": "198.18.0.2", "n": 2}, {"src": "198.18.0.3", "n": 3}, {"src": "198.18.0.6", "n": 6}]
        assert [json.loads(line)["time_ns"] for line in out.getvalue().splitlines()] == [S + 1000, S + 2000, S + 5000]
        st = host.stats()["a"]
        assert {k: st[k] for k in ("received", "delivered", "queued", "dropped", "errors", "emitted", "ticks")} == \
            {"received": 3, "delivered": 3, "queued": 0, "dropped": 0, "errors": 0, "emitted": 3, "ticks": 1}
    finally:
        eng.close()


@pytest.mark.kernel
def test_cli_replay_asl_emits_as_events_occur(tmp_path):
    """``xdpmon replay --asl``: the handler file named by the spec, its JSON lines
    on stdout in capture order, each with the statistic's value at its frame."""
    from test_replay_cli import write

    hf = handler_file(tmp_path, "h", RECORDER)
    spec = tmp_path / "a.mon"
    spec.write_text(STATS_SPEC.replace("HANDLER_FILE", hf))
    cap = write(tmp_path / "c.pcap", _frames())
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "replay", str(spec), "--pcap", str(cap), "--asl"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [(e["app"], e["kind"], e["fields"], e["time_ns"], e["interfaces"]) for e in lines] == [
        ("a", "seen", {"src": "198.18.0.2", "n": 2}, S + 1000, []),
        ("a", "seen", {"src": "198.18.0.3", "n": 3}, S + 2000, []),
        ("a", "seen", {"src": "198.18.0.6", "n": 6}, S + 5000, [])]
    tables = " ".join(r.stdout.replace("│", " ").split())         # the panel wraps long lines
    assert "3 delivered, 0 errors, 3 emitted, 0 dropped (queue full)" in tables
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "replay", str(spec), "--pcap", str(cap), "--asl",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    snap = json.loads(r.stdout)
    assert [e["fields"]["n"] for e in snap["asl_events"]] == [2, 3, 6]
    assert snap["asl"]["a"]["delivered"] == 3 and snap["asl"]["a"]["emitted"] == 3


CONTROL_SPEC = """app a {
  t1 { select tcp }
  t2 { n = count() }
  t3 { when n > param limit = 1 { send packet(ip.src) to asl } }
  asl "HANDLER_FILE"
}
app b {
  mode on_demand
  t2 { m = count() }
}
"""

CONTROLLER = """
class Changer:
    def __init__(self, ctx):
        self.ctx = ctx
        self.refusals = []

    def on_packet(self, event):
        self.ctx.set_param("limit", "2k")
        self.ctx.enable("b", "10s")
        for change in (lambda: self.ctx.set_param("nope", 1), lambda: self.ctx.set_param("limit", "lots"),
                       lambda: self.ctx.enable("a"), lambda: self.ctx.block("198.18.0.9/32", "1m", "test")):
            try:
                change()
            except self.ctx.ControlError as e:
                self.refusals.append(str(e))

HANDLER = Changer
"""


@pytest.mark.kernel
def test_set_param_and_enable_change_the_kernel_maps(tmp_path, caplog):
    """The handler's changes are in the program's maps (read back) and change what
    it does on the next frames; refusals are ControlError, logged, and the handler
    goes on."""
    eng, host, _ = _host_for(tmp_path, CONTROL_SPEC, CONTROLLER, engine="kernel")
    try:
        host.start()
        eng.maps.open_events(host.submit)
        with caplog.at_level(logging.WARNING, logger="xdpmon.asl.a"):
            for i in range(6):
                eng.run_frame(S + i * 1000, tcp(src=f"198.18.0.{i + 1}"))
        host.stop()
        snap = eng.snapshot()
        assert snap["apps"]["a"]["params"] == {"limit": 2000}
        assert eng.maps.params()[eng.manifest.param("a", "limit").index] == 2000
        _, until = eng.maps.ctl()
        # enabled at the second frame (the first event: n = 2 > 1), for 10 s of capture time
        assert until[eng.manifest.app("b").enable_bit] == S + 1000 + 10 * S
        assert snap["apps"]["b"]["enabled"] is True
        assert snap["apps"]["b"]["stats"]["m"] == {"value": {"count": 4}}        # frames 3..6
        h = host.workers["a"].handler
        assert h.stats.delivered == 1 and h.stats.errors == 0                     # limit 2000: no more events
        assert h.obj.refusals == ["app 'a' has no param 'nope' (its params: limit)",
                                  h.obj.refusals[1],
                                  "app 'a' is always on (mode always): there is nothing to enable",
                                  "this program has no blocklist"]
        assert h.obj.refusals[1].startswith("'lots' is not a number")
        assert [r.getMessage() for r in caplog.records] == [
            "set_param('nope', 1) refused: app 'a' has no param 'nope' (its params: limit)",
            f"set_param('limit', 'lots') refused: {h.obj.refusals[1]}",
            "enable('a', None) refused: app 'a' is always on (mode always): there is nothing to enable",
            "block('198.18.0.9/32') refused: this program has no blocklist"]
    finally:
        eng.close()


BLOCKER = """
class Blocker:
    def __init__(self, ctx):
        self.ctx = ctx
        self.entries = []
        self.refusals = []

    def on_packet(self, event):
        if len(self.entries) == 0:
            self.entries.append(self.ctx.block(event.ip_src, "10s", "too many"))
            for bad in ("198.18.0.200", "198.18.0.0/16", "not an address"):
                try:
                    self.ctx.block(bad)
                except self.ctx.ControlError as e:
                    self.refusals.append(str(e))

HANDLER = Blocker
"""


@pytest.mark.kernel
def test_block_acts_on_the_replayed_program(tmp_path):
    """ctx.block through the Controller's blocklist: the entry is in the kernel's
    trie (log-only: later frames of the source count as would-drop hits, and pass);
    an allowlisted or overlapping prefix is refused, the handler goes on."""
    spec = """app a {
  t1 { select tcp }
  t3 { when tcp.dport == 80 { send packet(ip.src) to asl } }
  asl "HANDLER_FILE"
}
"""
    eng, host, _ = _host_for(tmp_path, spec, BLOCKER, engine="kernel", blocklist=True)
    try:
        host.start()
        eng.maps.open_events(host.submit)
        verdicts = [eng.run_frame(S + i * 1000, tcp(src="198.18.0.5", dport=80)) for i in range(4)]
        host.stop()
        h = host.workers["a"].handler.obj
        (entry,) = h.entries
        assert (entry["prefix"], entry["expires_ns"], entry["reason"], entry["by"], entry["action"]) == \
            ("198.18.0.5/32", S + 10 * S, "too many", "asl:a", "would drop")
        assert h.refusals == [
            "cannot block 198.18.0.200/32: it is inside the allowed prefix 198.18.0.128/25 (--allow); "
            "allowed prefixes are never blocked",
            "cannot block 198.18.0.0/16: it contains the allowed prefix 198.18.0.128/25 (--allow); "
            "allowed prefixes are never blocked",
            "'not an address' is not an address or prefix ('not an address' does not appear to be an IPv4 or IPv6 "
            "network); write e.g. 198.18.0.7, 198.18.0.0/24 or 2001:2::/64"]
        assert host.stats()["a"]["errors"] == 0
        (now,) = eng.test_controller.blocks()
        assert (now["prefix"], now["hits"]) == ("198.18.0.5/32", 3)          # the 3 frames after the block
        assert verdicts == [2, 2, 2, 2]                                       # log-only: they pass
        assert eng.snapshot()["counters"]["blocklist.logged"] == 3
    finally:
        eng.close()


# ---- live: the live build, its ring buffer polled by the consumer thread -------------------------

LIVE_SPEC = """app slow {
  t1 { select udp }
  t3 { when pkt.len > 0 { send packet(ip.src, udp.sport) to asl } }
  asl "SLOW_FILE"
}
app fast {
  t1 { select udp }
  t3 { when pkt.len > 0 { send packet(udp.sport) to asl } }
  asl "FAST_FILE"
}
"""

SLOW = """
import threading

class Slow:
    entered = threading.Event()
    release = threading.Event()

    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = []
        self.thread = None
        self.stopped_after = None

    def on_start(self):
        self.thread = threading.current_thread().name

    def on_packet(self, event):
        self.seen.append(event.udp_sport)
        if len(self.seen) == 1:
            self.first = event
            Slow.entered.set()
            Slow.release.wait(60)
        if event.udp_sport % 4 == 3:
            raise RuntimeError(f"bad port {event.udp_sport}")

    def on_tick(self):
        Slow.release.wait(60)

    def on_stop(self):
        self.stopped_after = list(self.seen)

HANDLER = Slow
"""

FAST_HANDLER = """
class Fast:
    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = []
        self.first = None

    def on_packet(self, event):
        self.seen.append(event.udp_sport)
        self.first = self.first or event

HANDLER = Fast
"""
FAST = """
from dataclasses import dataclass


@dataclass(frozen=True)
class PacketEventR0A0:            # the operator's own event class: made with keywords
    ts: int
    udp_sport: int
""" + FAST_HANDLER


class Live:
    """The live build loaded, its host running live with its consumer thread."""

    def __init__(self, tmp_path, spec, handlers: dict[str, str], **kw):
        from runtime.control.controller import Controller
        from runtime.dataplane.bpf_test_run import TestRunner
        from runtime.engines.live import LiveEngine

        for name, text in handlers.items():
            spec = spec.replace(f"{name.upper()}_FILE", handler_file(tmp_path, name, text))
        art = compile_spec(tmp_path, spec, replay=False)
        self.eng = LiveEngine(art)
        self.runner = TestRunner(self.eng.fd, want_data_out=False)
        ctl = Controller(art.manifest, self.eng.maps, self.eng.now)
        self.out = io.StringIO()
        self.host = AslHost(art.manifest, art.stubs, controller=ctl, snapshot=self.eng.app_snapshot,
                            events=EventWriter(stream=self.out, host="h"), **kw)
        self.host.start_live(self.eng.maps, poll_timeout_ms=50)

    def send(self, sports):
        for p in sports:
            assert self.runner.run(udp(sport=p)).retval == 2

    def counter(self, name):
        return self.eng.snapshot()["counters"][name]

    def close(self):
        self.host.stop(2.0)
        self.eng.close()


@pytest.mark.kernel
def test_live_slow_handler_drops_exactly_and_others_go_on(tmp_path, caplog):
    """Queue of 5: while the slow handler is blocked on its first event, 20 records
    arrive: 5 are queued, 15 dropped and counted; the other app gets all 21 at
    once; the consumer never waits. A raising handler is counted, its traceback
    logged, and it keeps receiving; stop() delivers the queue, then on_stop()."""
    lv = Live(tmp_path, LIVE_SPEC, {"slow": SLOW, "fast": FAST}, options={"slow": {"queue": 5}})
    slow = lv.host.workers["slow"].handler.obj
    fast = lv.host.workers["fast"].handler.obj
    try:
        with caplog.at_level(logging.ERROR, logger="xdpmon.asl"):
            lv.send([1000])
            wait_for(type(slow).entered.is_set, "the slow handler to take its first event")
            lv.send(range(1001, 1021))
            wait_for(lambda: lv.host.stats()["slow"]["received"] == 21, "21 records for slow")
            wait_for(lambda: len(fast.seen) == 21, "fast to handle its 21 events")
            st = lv.host.stats()["slow"]
            assert (st["delivered"], st["queued"], st["dropped"]) == (1, 5, 15)
            assert fast.seen == list(range(1000, 1021))
            assert lv.counter("app.slow.events") == 21 and lv.counter("app.slow.ringbuf_full") == 0
            lv.host.tick()                                # queued, never waited for
            lv.host.tick()                                # one already waits: skipped
            assert lv.host.stats()["slow"]["ticks_skipped"] == 1
            type(slow).release.set()
            assert lv.host.stop(10.0) == {"slow": True, "fast": True}
        assert slow.thread == "asl-slow"
        # the stub's NamedTuple, made straight from the record; the kernel's clock
        assert (type(slow.first).__name__, slow.first._fields) == ("PacketEventR0A0", ("ts", "ip_src", "udp_sport"))
        assert slow.first[1:] == ("198.18.0.1", 1000) and 0 < slow.first.ts <= lv.eng.now()
        assert (type(fast.first).__module__, fast.first.udp_sport) == ("xdpmon_asl_fast", 1000)
        assert slow.seen == [1000, 1001, 1002, 1003, 1004, 1005]
        assert slow.stopped_after == slow.seen            # on_stop after the queue was delivered
        st = lv.host.stats()["slow"]
        assert {k: st[k] for k in ("received", "delivered", "queued", "dropped", "discarded", "errors", "ticks")} \
            == {"received": 21, "delivered": 6, "queued": 0, "dropped": 15, "discarded": 0, "errors": 1, "ticks": 1}
        errors = [r for r in caplog.records if r.name == "xdpmon.asl"]
        assert [r.getMessage() for r in errors] == ["asl slow.on_packet raised RuntimeError: bad port 1003"]
        assert errors[0].exc_info[0] is RuntimeError
        assert 'raise RuntimeError(f"bad port {event.udp_sport}")' in logging.Formatter().formatException(
            errors[0].exc_info)
        c = lv.host.counters()
        assert (c["app.slow.asl_dropped"], c["app.slow.asl_delivered"], c["app.fast.asl_delivered"]) == (15, 6, 21)
    finally:
        type(slow).release.set()
        lv.close()


RAISER = FAST_HANDLER.replace("Fast", "Raiser").replace(
    "self.seen.append(event.udp_sport)\n",
    "self.seen.append(event.udp_sport)\n        if event.udp_sport % 2:\n"
    "            raise ValueError(f'odd port {event.udp_sport}')\n")


@pytest.mark.kernel
def test_live_raising_handler_is_contained_and_its_log_bounded(tmp_path, caplog):
    """30 events, every other one raising: all 30 delivered, 15 errors counted, the
    first ERROR_BURST (10) logged with their tracebacks, the rest counted only."""
    from runtime.asl.handlers import ERROR_BURST

    lv = Live(tmp_path, LIVE_SPEC, {"slow": RAISER, "fast": FAST})
    try:
        with caplog.at_level(logging.ERROR, logger="xdpmon.asl"):
            lv.send(range(2000, 2030))
            wait_for(lambda: lv.host.stats()["slow"]["delivered"] == 30, "30 events delivered")
            assert lv.host.stop(10.0) == {"slow": True, "fast": True}
        assert lv.host.workers["slow"].handler.obj.seen == list(range(2000, 2030))
        assert lv.host.stats()["slow"]["errors"] == 15
        logged = [r for r in caplog.records if r.name == "xdpmon.asl"]
        assert ERROR_BURST == 10
        assert [r.getMessage() for r in logged] == [f"asl slow.on_packet raised ValueError: odd port {p}"
                                                    for p in range(2001, 2021, 2)]
        assert all(r.exc_info[0] is ValueError for r in logged)
    finally:
        lv.close()


STUCK = """
import threading

class Stuck:
    release = threading.Event()

    def __init__(self, ctx):
        self.stopped = False

    def on_packet(self, event):
        Stuck.release.wait(60)

    def on_stop(self):
        self.stopped = True

HANDLER = Stuck
"""


@pytest.mark.kernel
def test_live_stop_is_bounded_with_a_stuck_handler(tmp_path, caplog):
    """stop(timeout) returns within its time: the app stuck in a call is reported
    (its on_stop not called), the others stop."""
    lv = Live(tmp_path, LIVE_SPEC, {"slow": STUCK, "fast": FAST})
    stuck = lv.host.workers["slow"].handler.obj
    try:
        lv.send([1, 2, 3])
        wait_for(lambda: lv.host.stats()["slow"]["received"] == 3, "3 records for slow")
        with caplog.at_level(logging.WARNING, logger="xdpmon.asl"):
            assert lv.host.stop(0.3) == {"slow": False, "fast": True}
        assert stuck.stopped is False and lv.host.workers["fast"].stopped
        assert [r.getMessage() for r in caplog.records if r.name == "xdpmon.asl"] == [
            "asl slow did not stop within 0.3 s (busy in a handler call; 2 events queued)"]
    finally:
        type(stuck).release.set()
        wait_for(lambda: not lv.host.workers["slow"].thread.is_alive(), "the stuck worker to end")
        assert stuck.stopped and lv.host.workers["slow"].discarded == 2      # past the deadline: not delivered
        lv.close()
