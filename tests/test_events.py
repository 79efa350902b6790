"""Where events go (runtime/export/): a file rotated by size and reopened when moved, the
local syslog daemon (a Unix datagram socket the test binds), stdout; every event
counted as written or failed, a failure told once; the settings checked where they
are given (the command line, the config's outputs:)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.abi.event_output import Output, OutputError
from runtime.export.event_files import EventFile
from runtime.export.events import EventWriter
from runtime.export.syslog import SyslogSink, rfc3164, rfc5424

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_714_564_800_123_456_789           # 2024-05-01T12:00:00.123456789Z


def writer(sink, **kw) -> EventWriter:
    return EventWriter(sink=sink, host="r1", interfaces=["eth0"], instance="edge", clock=lambda: T0, **kw)


def line_of(n: int) -> str:
    """The line EventWriter writes for event ``n`` (of ``emit``): all of one length."""
    out = io.StringIO()
    EventWriter(stream=out, host="r1", interfaces=["eth0"], instance="edge", clock=lambda: T0).write(
        "acct", "report", {"n": f"{n:04d}"})
    return out.getvalue()


def emit(w: EventWriter, n: int) -> None:
    w.write("acct", "report", {"n": f"{n:04d}"})


# ---- files: rotation ------------------------------------------------------------------------

def test_rotation_by_size_keeps_n_files_and_loses_nothing_within_them(tmp_path):
    path = tmp_path / "events.jsonl"
    size = len(line_of(0))
    assert size == 230 and all(len(line_of(n)) == size for n in range(20))
    w = writer(EventFile(str(path), max_bytes=3 * size + 10, keep=2))
    for n in range(9):
        emit(w, n)
    files = [tmp_path / "events.jsonl.2", tmp_path / "events.jsonl.1", path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert [p.stat().st_size for p in files] == [3 * size] * 3
    assert "".join(p.read_text() for p in files) == "".join(line_of(n) for n in range(9))   # all, in order
    assert (w.count, w.failed, w.sink.rotations) == (9, 0, 2)
    for n in range(9, 11):                # one more rotation: the oldest file (events 0-2) goes
        emit(w, n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert [p.stat().st_size for p in files] == [3 * size, 3 * size, 2 * size]
    assert "".join(p.read_text() for p in files) == "".join(line_of(n) for n in range(3, 11))
    assert (w.count, w.failed, w.sink.rotations) == (11, 0, 3)
    assert w.stats() == {"to": str(path), "written": 11, "failed": 0, "rotations": 3}


def test_a_line_longer_than_the_size_has_a_file_of_its_own(tmp_path):
    path = tmp_path / "e.jsonl"
    w = writer(EventFile(str(path), max_bytes=250, keep=3))
    emit(w, 0)
    w.write("acct", "big", {"pad": "x" * 300})
    emit(w, 1)
    assert [len(p.read_text().splitlines()) for p in (tmp_path / "e.jsonl.2", tmp_path / "e.jsonl.1", path)] == [1, 1, 1]
    assert json.loads((tmp_path / "e.jsonl.1").read_text())["kind"] == "big"
    assert (tmp_path / "e.jsonl.1").stat().st_size > 250


def test_a_file_truncated_outside_is_not_rotated_early(tmp_path):
    """logrotate's copytruncate: the file is emptied under the writer (O_APPEND writes go on at
    its new end); the size this process counted is checked against the file's before rotating."""
    path = tmp_path / "e.jsonl"
    size = len(line_of(0))
    w = writer(EventFile(str(path), max_bytes=3 * size))
    for n in range(3):
        emit(w, n)
    os.truncate(path, 0)
    for n in range(3, 6):
        emit(w, n)
    assert path.read_text() == "".join(line_of(n) for n in range(3, 6)) and w.sink.rotations == 0
    assert not (tmp_path / "e.jsonl.1").exists()
    assert oct(path.stat().st_mode & 0o777) == oct(0o640 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_moved_file_is_opened_again(tmp_path):
    """logrotate's default: the file renamed (then created anew, or not): check() (every
    interval) opens the path again; reopen() (SIGHUP, ctl reload) at once. What was
    written in between is in the moved file; nothing is lost."""
    path = tmp_path / "e.jsonl"
    w = writer(EventFile(str(path)))
    emit(w, 0)
    os.rename(path, tmp_path / "e.jsonl.old")
    emit(w, 1)                                      # still to the file open: the moved one
    w.check()
    emit(w, 2)
    assert (tmp_path / "e.jsonl.old").read_text() == line_of(0) + line_of(1)
    assert path.read_text() == line_of(2)
    w.check()                                       # the same file: nothing to do
    emit(w, 3)
    os.rename(path, tmp_path / "e.jsonl.older")
    path.write_text("")                             # logrotate's create
    w.reopen()
    emit(w, 4)
    path.unlink()                                   # removed
    w.check()
    emit(w, 5)
    assert (tmp_path / "e.jsonl.older").read_text() == line_of(2) + line_of(3)
    assert path.read_text() == line_of(5)
    assert (w.count, w.failed) == (6, 0)


def test_threads_never_mix_their_lines_in_a_rotated_file(tmp_path):
    import threading

    path = tmp_path / "e.jsonl"
    w = writer(EventFile(str(path), max_bytes=20_000, keep=100))
    threads = [threading.Thread(target=lambda i=i: [w.write(f"a{i}", "k", {"n": n, "pad": "x" * 300})
                                                    for n in range(200)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = sorted(tmp_path.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    lines = [json.loads(x) for p in files for x in p.read_text().splitlines()]
    assert len(lines) == 800 and w.count == 800 and w.sink.rotations == len(files) - 1 > 10
    per_app = {}
    for ev in lines:
        per_app.setdefault(ev["app"], []).append(ev["fields"]["n"])
    assert per_app == {f"a{i}": list(range(200)) for i in range(4)}
    assert all(p.stat().st_size <= 20_000 for p in files)


# ---- write failures: counted, told once --------------------------------------------------------

def test_dev_full_counts_failures_and_says_why_once(caplog):
    w = writer(EventFile("/dev/full"))
    with caplog.at_level(logging.WARNING, logger="xdpmon.events"):
        for n in range(5):
            emit(w, n)
    assert (w.count, w.failed) == (0, 5)
    assert w.counters() == {"events.written": 0, "events.failed": 5}
    assert [r.getMessage() for r in caplog.records] == [
        "events: cannot write to /dev/full: No space left on device; events that cannot be written are counted "
        "(events.failed), and this is said again only once writing works again"]


@pytest.fixture
def full_tmpfs(tmp_path, kernel):
    """A tmpfs of 8 KiB (two pages), mounted for the test (root)."""
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(d)], check=True)
    yield d
    if subprocess.run(["umount", str(d)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(d)], check=False)      # a file still open: detached lazily


def test_a_full_disk_loses_no_half_line_and_writing_resumes(full_tmpfs, caplog):
    path = full_tmpfs / "e.jsonl"
    w = writer(EventFile(str(path)))
    pad = "x" * (1000 - len(line_of(0)) - len(', "pad": ""'))     # 1000 bytes a line
    with caplog.at_level(logging.WARNING, logger="xdpmon.events"):
        for n in range(11):
            assert len(w.write("acct", "report", {"n": f"{n:04d}", "pad": pad})["fields"]["pad"]) == len(pad)
        assert (w.count, w.failed) == (8, 3)         # 8 lines of 1000 bytes fit in 8192; the 9th is cut off again
        assert path.stat().st_size == 8000
        lines = path.read_text().splitlines()
        assert [json.loads(x)["fields"]["n"] for x in lines] == [f"{n:04d}" for n in range(8)]
        os.truncate(path, 0)                          # room again
        w.write("acct", "report", {"n": "0011", "pad": pad})
    w.close()
    assert (w.count, w.failed) == (9, 3) and path.stat().st_size == 1000
    assert [r.getMessage() for r in caplog.records] == [
        f"events: cannot write to {path}: No space left on device; events that cannot be written are counted "
        "(events.failed), and this is said again only once writing works again",
        f"events: writing to {path} again (3 events could not be written)"]


def test_a_directory_that_went_away_counts_until_it_is_back(tmp_path, caplog):
    d = tmp_path / "logs"
    d.mkdir()
    w = writer(EventFile(str(d / "e.jsonl")))
    emit(w, 0)
    (d / "e.jsonl").unlink()
    d.rmdir()
    with caplog.at_level(logging.WARNING, logger="xdpmon.events"):
        w.check()                                     # cannot open it again: said once, tried again later
        emit(w, 1)
        emit(w, 2)
        d.mkdir()
        emit(w, 3)
    assert (w.count, w.failed) == (2, 2)
    assert (d / "e.jsonl").read_text() == line_of(3)
    assert [r.getMessage() for r in caplog.records] == [
        f"events: cannot open {d / 'e.jsonl'} again: No such file or directory; the next events try again",
        f"events: cannot write to {d / 'e.jsonl'}: No such file or directory; events that cannot be written are "
        "counted (events.failed), and this is said again only once writing works again",
        f"events: writing to {d / 'e.jsonl'} again (2 events could not be written)"]


def test_a_closed_stdout_is_counted():
    out = io.StringIO()
    w = EventWriter(stream=out, host="h", clock=lambda: T0)
    emit(w, 0)
    out.close()
    emit(w, 1)
    assert (w.count, w.failed) == (1, 1)


# ---- syslog ----------------------------------------------------------------------------------------

def test_syslog_framings_exact():
    when = time.struct_time((2024, 5, 1, 9, 3, 7, 2, 122, 0))
    assert rfc3164(30, when, 4242, '{"a": 1}') == b'<30>May  1 09:03:07 xdpmon[4242]: {"a": 1}'
    assert rfc5424(158, T0, "r1", 4242, "victim", '{"a": 1}') == \
        b'<158>1 2024-05-01T12:00:00.123456Z r1 xdpmon 4242 victim - {"a": 1}'
    # a kind that is no MSGID (a space, more than 32 characters, not ASCII): "-"
    for kind in ("two words", "k" * 33, "caf\u00e9"):
        assert rfc5424(158, T0, "r1", 1, kind, "m") == b"<158>1 2024-05-01T12:00:00.123456Z r1 xdpmon 1 - - m"


class Daemon:
    """A syslog daemon's socket: a Unix datagram socket bound at ``path``."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(5)

    def recv(self) -> bytes:
        return self.sock.recv(65536)

    def pending(self) -> list[bytes]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(65536))
        except BlockingIOError:
            pass
        self.sock.settimeout(5)
        return out

    def close(self):
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "log.sock")
    yield d
    d.close()


def test_syslog_rfc3164_to_a_unix_datagram_socket(daemon):
    w = writer(SyslogSink(str(daemon.path), facility="local3"))
    ev = w.write("syn_flood", "victim", {"victim": "198.19.0.80"})
    w.write("syn_flood", "alert", {"message": "m", "rule": None, "ts_ns": 5}, severity="warning")
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(T0 // 10**9)).encode()    # C locale: English months
    line = json.dumps(ev, separators=(", ", ": ")).encode()
    assert daemon.recv() == b"<158>" + stamp + b" xdpmon[%d]: " % os.getpid() + line      # local3 (19) * 8 + info (6)
    second = daemon.recv()
    assert second.startswith(b"<156>" + stamp + b" xdpmon[")                                 # warning (4)
    assert json.loads(second.split(b"]: ", 1)[1])["severity"] == "warning"
    assert (w.count, w.failed) == (2, 0)
    assert w.sink.name == f"syslog at {daemon.path} (rfc3164, facility local3)"


def test_syslog_rfc5424_to_a_unix_datagram_socket(daemon):
    w = writer(SyslogSink(str(daemon.path), framing="rfc5424"))
    ev = w.write("syn_flood", "attack_started", {"victim": "198.19.0.80"}, severity="notice")
    line = json.dumps(ev, separators=(", ", ": ")).encode()
    assert daemon.recv() == b"<29>1 2024-05-01T12:00:00.123456Z r1 xdpmon %d attack_started - " % os.getpid() + line


def test_syslog_daemon_gone_and_back(tmp_path, caplog):
    path = tmp_path / "log.sock"
    d = Daemon(path)
    w = writer(SyslogSink(str(path)))
    emit(w, 0)
    assert d.recv().endswith(line_of(0).rstrip("\n").encode())
    d.close()                                              # the daemon stops: its socket goes
    with caplog.at_level(logging.WARNING, logger="xdpmon.events"):
        emit(w, 1)
        emit(w, 2)
        d = Daemon(path)                                   # restarted: a new socket at the same path
        emit(w, 3)
    try:
        assert d.recv().endswith(line_of(3).rstrip("\n").encode()) and d.pending() == []
    finally:
        d.close()
    assert (w.count, w.failed) == (2, 2)
    assert [r.getMessage() for r in caplog.records] == [
        f"events: cannot write to syslog at {path} (rfc3164, facility daemon): No such file or directory; events "
        "that cannot be written are counted (events.failed), and this is said again only once writing works again",
        f"events: writing to syslog at {path} (rfc3164, facility daemon) again (2 events could not be written)"]


def test_syslog_daemon_that_does_not_read_costs_one_wait(daemon):
    """Its queue full, the first send waits the timeout and fails; the next ones fail at
    once, until one goes through; every event is received or counted as failed."""
    w = writer(SyslogSink(str(daemon.path), timeout=0.05))
    for n in range(2000):
        emit(w, n)
        if w.failed == 1:
            assert w.sink._stalled
    assert w.failed > 0 and w.count + w.failed == 2000
    got = daemon.pending()
    assert len(got) == w.count and got[-1].endswith(line_of(w.count - 1).rstrip("\n").encode())
    emit(w, 2000)
    assert daemon.pending()[0].endswith(line_of(2000).rstrip("\n").encode()) and not w.sink._stalled
    assert (w.count + w.failed) == 2001


def test_no_syslog_daemon_is_refused_at_open(tmp_path):
    from runtime.export.events import open_sink

    with pytest.raises(OutputError, match=f"cannot write events to syslog at {tmp_path}/none.sock: "
                                          "No such file or directory"):
        open_sink(Output.of(f"syslog:{tmp_path}/none.sock"))
    with pytest.raises(OutputError, match=f"cannot write events to the file {tmp_path}/no/e.jsonl: "
                                          "No such file or directory"):
        open_sink(Output.of(f"{tmp_path}/no/e.jsonl"))


# ---- the settings --------------------------------------------------------------------------------

def test_outputs_parsed():
    assert Output.of(None) == Output.of("-") == Output.of("stdout") == Output("stdout")
    assert Output.of("syslog") == Output("syslog", "/dev/log")
    assert Output.of("syslog:/run/log.sock", facility="local7", framing="rfc5424") == \
        Output("syslog", "/run/log.sock", facility="local7", framing="rfc5424")
    assert Output.of("e.jsonl", 100 << 20) == Output("file", "e.jsonl", 100 << 20, 5)
    assert Output.of("e.jsonl", 1000, 2) == Output("file", "e.jsonl", 1000, 2)


@pytest.mark.parametrize("args, message", [
    (("syslog", 1000), "events to syslog are not rotated: a maximum size and files kept are for an events file"),
    ((None, None, 3), "events to stdout are not rotated: a maximum size and files kept are for an events file"),
    (("e.jsonl", None, 3), "rotated files kept (--events-keep, events_keep) need a size to rotate at "
                           "(--events-max-size, events_max_size)"),
    (("e.jsonl", None, None, "local0"), "a syslog facility and framing are for events to syslog, not to a file"),
    (("syslog", None, None, "local9"), "syslog facility 'local9' is not one of kern, user, mail, daemon, auth, "
                                       "syslog, lpr, news, uucp, cron, authpriv, ftp, local0, local1, local2, "
                                       "local3, local4, local5, local6, local7"),
    (("syslog", None, None, None, "rfc9999"), "syslog framing 'rfc9999' is not one of rfc3164, rfc5424"),
    (("e.jsonl", 1000, 0), "rotation keeps at least 1 file, not 0"),
])
def test_outputs_that_do_not_go_together(args, message):
    with pytest.raises(OutputError) as e:
        Output.of(*args)
    assert str(e.value) == message


def test_config_outputs(tmp_path):
    from dsl.errors import SpecError
    from runtime.control.config import load_config, merge

    spec = tmp_path / "a.mon"
    spec.write_text("app a {\n  t1 { select ip }\n  t2 { n = count() }\n}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("specs: [a.mon]\ninterfaces: [eth0]\n"
                   "outputs: {events: logs/e.jsonl, events_max_size: 100Mi, events_keep: 3}\n")
    c = load_config(str(cfg))
    assert (c.events_path, c.events_max_size, c.events_keep) == (str(tmp_path / "logs/e.jsonl"), 100 << 20, 3)
    opts = merge(c, {"events_keep": 7})
    assert (opts.events_path, opts.events_max_size, opts.events_keep) == (str(tmp_path / "logs/e.jsonl"),
                                                                           100 << 20, 7)
    cfg.write_text("specs: [a.mon]\ninterfaces: [eth0]\n"
                   "outputs: {events: 'syslog:dev/log', events_facility: local2, events_format: rfc5424}\n")
    c = load_config(str(cfg))
    assert (c.events_path, c.events_facility, c.events_format) == (f"syslog:{tmp_path}/dev/log", "local2", "rfc5424")
    cfg.write_text("specs: [a.mon]\ninterfaces: [eth0]\noutputs:\n  events: syslog\n  events_max_size: 1M\n")
    with pytest.raises(SpecError) as e:
        load_config(str(cfg))
    (d,) = e.value.diagnostics
    assert (d.span.line, d.span.col, d.message) == (5, 20, "outputs: events to syslog are not rotated: a maximum "
                                                           "size and files kept are for an events file")
    cfg.write_text("specs: [a.mon]\ninterfaces: [eth0]\noutputs: {events: e.jsonl, events_max_size: 0}\n")
    with pytest.raises(SpecError) as e:
        load_config(str(cfg))
    assert [x.message for x in e.value.diagnostics] == ["a size is more than 0 bytes, not '0'"]


@pytest.mark.parametrize("args, message", [
    (["--events", "syslog", "--events-max-size", "1M"],
     "Error: events to syslog are not rotated: a maximum size and files kept are for an events file"),
    (["--events", "e.jsonl", "--events-keep", "2"],
     "Error: rotated files kept (--events-keep, events_keep) need a size to rotate at (--events-max-size, "
     "events_max_size)"),
    (["--events", "e.jsonl", "--events-max-size", "lots"],
     "Error: Invalid value for --events-max-size: 'lots' is not a size: write bytes, e.g. 4Gi, 512Mi or 6G "
     "(k, M, G, T: powers of 1000; Ki, Mi, Gi, Ti: powers of 1024)"),
    (["--events-facility", "local1"], "Error: a syslog facility and framing are for events to syslog, not to stdout"),
])
def test_run_refuses_events_settings_that_do_not_go_together(tmp_path, args, message):
    spec = tmp_path / "a.mon"
    spec.write_text("app a {\n  t1 { select ip }\n  t2 { n = count() }\n}\n")
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "run", str(spec), "-i", "lo", *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == message, r.stderr
