"""`xdpmon replay` end to end: captures in, snapshot out, in the kernel."""

from __future__ import annotations

import json
import re
import os
import pty
import signal
import struct
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import dpkt
import pytest

from examples.traffic import generators as g

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p) for p in (ROOT / "specs").glob("*.mon"))


def xdpmon(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def write(path: Path, frames, linktype=dpkt.pcap.DLT_EN10MB, ng=False):
    with open(path, "wb") as f:
        if ng:
            w = dpkt.pcapng.Writer(f, linktype=linktype)
        else:
            w = dpkt.pcap.Writer(f, nano=True, linktype=linktype)
        for ts, data in frames:
            w.writepkt(data, ts=float(Decimal(ts) / 10**9) if ng else Decimal(ts) / 10**9)
    return path


@pytest.fixture(scope="module")
def frames():
    return g.mixed(seed=3)[:400]


def test_json_snapshot(tmp_path, frames):
    cap = write(tmp_path / "mixed.pcap", frames)
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert set(snap) == {"apps", "counters", "events", "replay"}
    assert snap["counters"]["frames"] == 400 and snap["counters"]["verdict.pass"] == 400
    assert snap["replay"] == {"frames": 400, "refused": 0, "refused_by": {}, "cut": 0, "backwards": 0,
                              "engine": "kernel"}
    acc = snap["apps"]["traffic_accounting"]
    assert acc["enabled"] is True and acc["params"] == {}
    # every IP frame is counted once per destination: all frames but the non-IP ones
    total = sum(e["value"]["packets"] for e in acc["stats"]["per_dst"])
    assert total == 400 - snap["counters"]["parse.non_ip"]
    assert snap["apps"]["syn_flood"]["enabled"] is False
    assert all(isinstance(e["key"]["ip.dst"], str) for e in acc["stats"]["per_dst"])


def test_pcapng_gives_the_same_snapshot(tmp_path, frames):
    a = xdpmon("replay", *SPECS, "--pcap", str(write(tmp_path / "a.pcap", frames)), "--json")
    b = xdpmon("replay", *SPECS, "--pcap", str(write(tmp_path / "b.pcapng", frames, ng=True)), "--json")
    assert a.returncode == b.returncode == 0
    sa, sb = json.loads(a.stdout), json.loads(b.stdout)
    # pcapng timestamps here are microseconds: compare what does not depend on them
    assert sa["counters"] == sb["counters"]
    assert sa["apps"]["traffic_accounting"] == sb["apps"]["traffic_accounting"]


def test_other_link_type_is_refused(tmp_path):
    cap = write(tmp_path / "raw.pcap", [(0, bytes(20))], linktype=101)
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 1
    assert "link type 101 (raw IP) is not Ethernet" in r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_capture_processes_what_is_readable(tmp_path, frames):
    cap = write(tmp_path / "cut.pcap", frames[:10])
    data = cap.read_bytes()
    cap.write_bytes(data[: len(data) - 30])          # cut into the last record
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 1
    assert "stopped after frame 9" in r.stderr and "truncated or corrupt" in r.stderr
    assert json.loads(r.stdout)["counters"]["frames"] == 9


def test_not_a_capture(tmp_path):
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(b"this is not a capture file at all")
    r = xdpmon("replay", *SPECS, "--pcap", str(bad))
    assert r.returncode == 1 and "not a pcap or pcapng file" in r.stderr and "Traceback" not in r.stderr


def test_runt_frames_are_counted_not_run(tmp_path, frames):
    cap = write(tmp_path / "runt.pcap", [(0, b"\x01" * 10)] + frames[:5])
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    snap = json.loads(r.stdout)
    assert snap["replay"] == {"frames": 6, "refused": 1, "refused_by": {"short": 1}, "cut": 0, "backwards": 0,
                              "engine": "kernel"}
    assert snap["counters"]["frames"] == 5 and snap["counters"]["replay.refused"] == 1
    assert snap["counters"]["replay.refused.short"] == 1 and snap["counters"]["replay.refused.oversize"] == 0


def test_tables_and_asl(tmp_path):
    cap = write(tmp_path / "scan.pcap", g.port_scan(300, seed=1))
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--asl")
    assert r.returncode == 0, r.stderr
    assert "port_scan" in r.stdout and "600 frames replayed through the kernel engine" in r.stdout
    emitted = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    # past 100 distinct ports the kernel sends probes at up to 100/s: a burst of 100,
    # then one every 10 ms of the scan's remaining 100 ms
    assert {"app": "port_scan", "kind": "scanner_summary",
            "fields": {"source": "198.18.66.6", "ports": 110, "hosts": 1}} \
        in [{k: e[k] for k in ("app", "kind", "fields")} for e in emitted]


# ---- Ctrl-C: exit 130 and the snapshot of what was replayed, marked partial -------------------------

BIG = 1_000_000            # frames: about 13 s in the kernel engine here, interrupted long before


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory):
    """A large capture, written directly: one TCP frame, a microsecond apart."""
    from scapy.all import IP, TCP, Ether

    frame = bytes(Ether() / IP(src="198.18.0.1", dst="198.19.0.1") / TCP(sport=1234, dport=80))
    rec = struct.Struct("<IIII")
    path = tmp_path_factory.mktemp("big") / "big.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, dpkt.pcap.DLT_EN10MB))
        for start in range(0, BIG, 100_000):
            f.write(b"".join(rec.pack(i // 1_000_000, i % 1_000_000, len(frame), len(frame)) + frame
                             for i in range(start, start + 100_000)))
    return path


def _processes(root: int) -> list[int]:
    """``root`` and its descendants (the command and the child that replays, see
    runtime/dataplane/fatal_exit.py)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return out


def _wait_until_replaying(root: int, capture: Path, timeout: float = 120) -> None:
    """Until some process of the command has read into the capture past its first frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _processes(root):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except FileNotFoundError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") != str(capture):
                        continue
                    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                        pos = int(next(ln for ln in f if ln.startswith("pos:")).split()[1])
                except (FileNotFoundError, StopIteration):
                    continue
                if pos > 1 << 20:
                    return
        time.sleep(0.05)
    raise AssertionError("the replay did not start")


COUNT_SPEC = "app c { t2 { n = count() } }\n"


def _check_partial(out: str, err: str, capture: Path) -> None:
    snap = json.loads(out)
    n = snap["replay"]["frames"]
    assert 0 < n < BIG
    assert snap["replay"] == {"frames": n, "refused": 0, "refused_by": {}, "cut": 0, "backwards": 0,
                              "engine": "kernel", "partial": True}
    assert snap["counters"]["frames"] == n
    assert snap["apps"]["c"]["stats"]["n"] == {"value": {"count": n}}
    assert err == (f"xdpmon: interrupted in {capture}, after its first {n:,} frames: the snapshot is partial "
                   f"({n:,} frames replayed)\n")


def test_sigint_stops_the_replay_and_prints_the_partial_snapshot(tmp_path, big_capture):
    (tmp_path / "c.mon").write_text(COUNT_SPEC)
    p = subprocess.Popen([sys.executable, "-m", "runtime.cli", "replay", "c.mon", "--pcap", str(big_capture),
                          "--json"], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_replaying(p.pid, big_capture)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    _check_partial(out, err, big_capture)


def test_ctrl_c_on_a_terminal_stops_the_replay(tmp_path, big_capture):
    """The real keystroke: ^C typed on the command's terminal, which signals its whole process
    group (the waiting parent leaves it to the child that replays)."""
    (tmp_path / "c.mon").write_text(COUNT_SPEC)
    pid, master = pty.fork()
    if pid == 0:                                     # the child: a session on the terminal
        os.chdir(tmp_path)
        os.environ.update(PYTHONPATH=str(ROOT), NO_COLOR="1")
        os.execv(sys.executable, [sys.executable, "-m", "runtime.cli", "replay", "c.mon", "--pcap",
                                  str(big_capture), "--json"])
    chunks = []
    try:
        _wait_until_replaying(pid, big_capture)
        os.write(master, b"\x03")
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:                          # EIO: the terminal's last user is gone
                break
            if not data:
                break
            chunks.append(data)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert text.startswith("^C")                      # the terminal's echo of the keystroke
    err_at = text.index("xdpmon: interrupted")
    err_end = text.index("\n", err_at) + 1
    _check_partial(text[2:err_at] + text[err_end:], text[err_at:err_end], big_capture)


# ---- captures that are not plain files -------------------------------------------------------------

def test_endless_devices_are_not_captures():
    for dev in ("/dev/zero", "/dev/urandom"):
        r = xdpmon("replay", *SPECS, "--pcap", dev, "--json")
        assert r.returncode == 1
        assert re.fullmatch(rf"xdpmon: {dev}: not a pcap or pcapng file \(it starts with "
                            rf"{'00000000' if dev == '/dev/zero' else '[0-9a-f]{8}'}\)\n", r.stderr), r.stderr
        assert json.loads(r.stdout)["counters"]["frames"] == 0


def test_a_corrupt_record_length_is_refused_not_read(tmp_path, frames):
    cap = write(tmp_path / "ok.pcap", frames[:3])
    data = cap.read_bytes() + struct.pack("<IIII", 9, 0, 1 << 30, 1 << 30) + bytes(100)
    cap.write_bytes(data)
    r = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert r.returncode == 1
    assert r.stderr == (f"xdpmon: {cap}: stopped after frame 3 near byte {len(data) - 100}: the file is truncated "
                        f"or corrupt (a record claims 1073741824 bytes, more than any frame (16777216 bytes))\n")
    assert json.loads(r.stdout)["counters"]["frames"] == 3


def _fifo_feeder(path: Path, data: bytes, hold: threading.Event | None = None) -> threading.Thread:
    """Write ``data`` into the FIFO ``path``; keep it open until ``hold`` is set, if given."""
    def feed():
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            if hold is not None:
                hold.wait(120)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return t


def test_a_fifo_carrying_a_capture_replays_like_the_file(tmp_path, frames):
    """A pcap stream (tcpdump -w - | ...) is read front to back as it arrives."""
    cap = write(tmp_path / "mixed.pcap", frames)
    fifo = tmp_path / "stream.pcap"
    os.mkfifo(fifo)
    feeder = _fifo_feeder(fifo, cap.read_bytes())
    from_fifo = xdpmon("replay", *SPECS, "--pcap", str(fifo), "--json")
    feeder.join(10)
    from_file = xdpmon("replay", *SPECS, "--pcap", str(cap), "--json")
    assert from_fifo.returncode == from_file.returncode == 0, from_fifo.stderr
    assert json.loads(from_fifo.stdout) == json.loads(from_file.stdout)


def _blocked_reading(root: int, path: Path) -> bool:
    """Some process of the command is in read(2) on ``path`` (x86_64: syscall 0)."""
    for pid in _processes(root):
        try:
            call = open(f"/proc/{pid}/syscall").read().split()
            if call[0] == "0" and os.readlink(f"/proc/{pid}/fd/{int(call[1], 16)}") == str(path):
                return True
        except (FileNotFoundError, IndexError, ValueError):
            continue
    return False


def test_sigint_while_a_fifo_sends_nothing_stops_at_once(tmp_path, frames):
    """The writer sent 100 frames and went quiet: the replay waits in read(2); Ctrl-C ends the
    wait, and the snapshot holds exactly those 100 frames."""
    (tmp_path / "c.mon").write_text(COUNT_SPEC)
    cap = write(tmp_path / "first.pcap", frames[:100])
    fifo = tmp_path / "quiet.pcap"
    os.mkfifo(fifo)
    hold = threading.Event()
    feeder = _fifo_feeder(fifo, cap.read_bytes(), hold)
    p = subprocess.Popen([sys.executable, "-m", "runtime.cli", "replay", "c.mon", "--pcap", str(fifo), "--json"],
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _blocked_reading(p.pid, fifo) and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        hold.set()
        p.kill()
        feeder.join(10)
    assert p.returncode == 130, err
    assert err == f"xdpmon: interrupted in {fifo}, after its first 100 frames: the snapshot is partial (100 frames replayed)\n"
    snap = json.loads(out)
    assert snap["replay"] == {"frames": 100, "refused": 0, "refused_by": {}, "cut": 0, "backwards": 0,
                              "engine": "kernel", "partial": True}
    assert snap["apps"]["c"]["stats"]["n"] == {"value": {"count": 100}}


@pytest.mark.parametrize("top", ["-1", "0"])
def test_top_must_be_positive(top):
    r = xdpmon("replay", *SPECS, "--pcap", "/dev/null", "--top", top)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("Usage: xdpmon replay [OPTIONS] FILES...\nTry 'xdpmon replay --help' for help.\n\n"
                        f"Error: Invalid value for '--top': {top} is not in the range x>=1.\n")
