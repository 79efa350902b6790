"""`xdpmon run` hosting an app's handler on a veth pair (tests/netns.py): every frame
sent makes one `send packet` record, consumed live, typed, handed to the handler,
which emits one event: --events FILE holds exactly one line per frame sent."""

from __future__ import annotations

import pytest

from event_helpers import read_events
from test_run import Running, final_of, frame_v4

pytestmark = [pytest.mark.kernel]

SPEC = """\
app echo {
  t1 { select udp }
  t2 { n = count() by ip.dst }
  t3 { when n > 0 { send packet(ip.src, ip.dst, udp.dport, pkt.len) to asl limit 100000/s } }
  asl "echo.py"
}
"""

HANDLER = """\
class Echo:
    def __init__(self, ctx):
        self.ctx = ctx

    def on_packet(self, ev):
        self.ctx.emit("packet", src=ev.ip_src, dst=ev.ip_dst, dport=ev.udp_dport, len=ev.pkt_len)


HANDLER = Echo
"""


def test_run_emits_one_event_per_frame_sent(veth_pair, tmp_path):
    (tmp_path / "echo.mon").write_text(SPEC)
    (tmp_path / "echo.py").write_text(HANDLER)
    events = tmp_path / "events.jsonl"
    r = Running(veth_pair, [str(tmp_path / "echo.mon"), "-i", "mon", "--json", "--interval", "500ms",
                            "--duration", "5s", "--events", str(events), "--name", "asltest"],
                {"XDPMON_RUN_DIR": str(tmp_path / "run")})          # its own: another suite may run
    frames = [frame_v4("198.18.8.1")] * 40 + [frame_v4("198.18.8.2", 100)] * 20
    assert veth_pair.send(frames) == 60
    code, out, err = r.finish()
    assert code == 0, err
    every = read_events(events)
    lines = [x for x in every if x["app"] != "xdpmon"]          # the handler's (the runtime's own around them)
    assert [x["kind"] for x in every if x["app"] == "xdpmon"] == ["instance_started", "attached", "detached",
                                                                   "instance_stopped"]
    assert len(lines) == 60
    assert {(x["app"], x["kind"], x["instance"], tuple(x["interfaces"])) for x in lines} == {
        ("echo", "packet", "asltest", ("mon",))}
    assert [x["fields"] for x in lines] == (
        [{"src": "198.18.200.2", "dst": "198.18.8.1", "dport": 2000, "len": 62}] * 40
        + [{"src": "198.18.200.2", "dst": "198.18.8.2", "dport": 2000, "len": 142}] * 20)
    times = [x["time_ns"] for x in lines]
    assert times == sorted(times)
    fin = final_of(out)
    assert fin["counters"]["app.echo.events"] == 60 and fin["counters"]["app.echo.ringbuf_full"] == 0
    assert fin["counters"]["asl.echo.delivered"] == 60 and fin["counters"]["asl.echo.queue_dropped"] == 0
    assert fin["counters"]["asl.echo.errors"] == 0
    assert veth_pair.xdp() is None
