"""The blocklist of a running instance on a veth pair (tests/netns.py): a block added
through the Controller while the program is attached drops the frames that follow
(with enforce) or lets them pass counted as would-drop; the per-interface frame
counter is the number of frames sent.

The instance runs in the monitor namespace in a child process (DRIVER) that
starts runtime.monitor.instance.Instance as ``xdpmon run`` does and takes one
JSON command a line on stdin: block, read, stop. (The control socket that
``xdpmon ctl`` will speak is not part of this test.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kernel]

DRIVER = r"""
import json, sys
from compiler.driver import compile_files
from runtime.control.controller import ControlError
from runtime.monitor.instance import Instance
from runtime.control.options import RunOptions

spec, enforce, events = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
inst = Instance(compile_files([spec]), RunOptions(specs=[spec], interfaces=["mon"], enforce=enforce, view="none",
                                                  events_path=events))
try:
    inst.start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "block":
                out = inst.controller.block(cmd["prefix"], ttl=cmd.get("ttl"), reason="test", by="test")
            elif cmd["op"] == "read":
                r = inst.reader.read().to_json()
                out = {"counters": r["counters"], "interfaces": r["interfaces"], "apps": r["apps"],
                       "blocks": inst.controller.blocks()}
            else:
                break
        except ControlError as e:
            out = {"error": str(e)}
        print(json.dumps(out, default=str), flush=True)
finally:
    inst.detach()
    inst.close()
"""

SPEC = "app seen {\n  t1 { select ip }\n  t2 { by_src = count() by ip.src }\n}\n"


def frame(src: str, payload: int = 20) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src=src, dst="198.18.250.1")
                 / UDP(sport=1000, dport=2000) / Raw(b"x" * payload))


class Driven:
    def __init__(self, pair, spec: Path, enforce: bool):
        self.pair = pair
        self.p = pair.run_in_monitor([sys.executable, "-c", DRIVER, str(spec), "1" if enforce else "0",
                                      str(spec.parent / "events.jsonl")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                     # its own run directory: another instance named
                                                     # "default" (another suite's) may run on this machine
                                                     "XDPMON_RUN_DIR": str(spec.parent / "run")})
        first = self.p.stdout.readline()
        if not first:
            raise AssertionError("the instance did not start:\n" + self.p.stderr.read())
        assert json.loads(first) == {"ready": True}

    def __call__(self, **cmd) -> dict:
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError("the instance stopped:\n" + self.p.stderr.read())
        return json.loads(line)

    def stop(self) -> int:
        try:
            self.p.stdin.write(json.dumps({"op": "stop"}) + "\n")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


@pytest.mark.parametrize("enforce", [True, False], ids=["enforce", "log-only"])
def test_a_block_added_while_running(veth_pair, tmp_path, enforce):
    spec = tmp_path / "seen.mon"
    spec.write_text(SPEC)
    d = Driven(veth_pair, spec, enforce)
    try:
        bad, good = "198.18.201.2", "198.18.202.2"
        assert veth_pair.send([frame(bad)] * 4 + [frame(good)] * 3) == 7
        before = d(op="read")
        assert before["counters"]["blocklist.logged"] == before["counters"]["blocklist.dropped"] == 0
        # the monitored interface's own address is never blocked
        refused = d(op="block", prefix=f"198.18.{veth_pair.subnet}.0/30")
        assert refused == {"error": f"cannot block 198.18.{veth_pair.subnet}.0/30: it contains the allowed prefix "
                                    f"{veth_pair.mon_addr}/32 (an address of mon); allowed prefixes are never blocked"}
        e = d(op="block", prefix="198.18.201.0/24", ttl="10m")
        assert (e["prefix"], e["action"], e["hits"]) == ("198.18.201.0/24", "drop" if enforce else "would drop", 0)
        assert veth_pair.send([frame(bad)] * 10 + [frame(good, 100)] * 5) == 15
        r = d(op="read")
    finally:
        code = d.stop()
    assert code == 0
    c = r["counters"]
    seen = {x["key"]["ip.src"]: x["value"]["count"] for x in r["apps"]["seen"]["stats"]["by_src"]}
    if enforce:
        assert (c["blocklist.dropped"], c["verdict.drop"], c["blocklist.logged"]) == (10, 10, 0)
        assert seen == {bad: 4, good: 8}
    else:
        assert (c["blocklist.logged"], c["blocklist.dropped"], c["verdict.drop"]) == (10, 0, 0)
        assert seen == {bad: 14, good: 8}
    assert [(b["prefix"], b["hits"]) for b in r["blocks"]] == [("198.18.201.0/24", 10)]
    assert c["frames"] == 22
    ifc = r["interfaces"]["mon"]
    assert (ifc["frames"], ifc["bytes"]) == (22, 7 * 62 + 10 * 62 + 5 * 142)
    assert veth_pair.xdp() is None
