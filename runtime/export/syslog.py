"""Events to the local syslog daemon: one datagram per event on a Unix socket, the JSON
line as the message.

``SyslogSink(address, facility, framing)`` connects a datagram socket to ``address``
(``/dev/log`` by default: journald, rsyslog and syslog-ng all listen there) and sends
each event framed as

- ``rfc3164`` (the default): what glibc's ``syslog(3)`` sends to a local socket,
  ``<PRI>Mmm dd hh:mm:ss xdpmon[PID]: MESSAGE``, local time, no host name (the daemon
  adds it); every local daemon takes it, journald keeps ``xdpmon`` as the identifier;
- ``rfc5424``: ``<PRI>1 TIMESTAMP HOST xdpmon PID KIND - MESSAGE``, the time in UTC
  with microseconds, the event's kind as the MSGID (``-`` when the kind is not 1 to
  32 printable characters without spaces), no structured data; for daemons and
  collectors that parse RFC 5424 (syslog-ng, rsyslog, Vector's ``syslog`` source).

PRI is ``facility * 8 + severity`` (RFC 5424, table 1 and 2), the severity the event's
own. The message is the JSON line without its newline: ASCII (JSON escapes the rest),
so no BOM.

A send waits at most ``timeout`` s for a daemon that does not read (its queue full);
after such a wait the next sends do not wait at all until one goes through, so a stuck
daemon costs each event a failed send, not a wait. A daemon that went away (restarted:
its socket replaced, refused) is connected to again once per event. Every failure
raises OSError; the writer counts it (runtime/export/events.py).
"""

from __future__ import annotations

import os
import socket
import time

from runtime.abi.event_output import DEFAULT_SYSLOG, FACILITIES, FRAMINGS
from runtime.abi.event_schema import SEVERITY_CODES

APP_NAME = "xdpmon"
SEND_TIMEOUT_S = 0.1

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Reconnect on these (the daemon restarted or went away); anything else is a failure as it is.
_GONE = (ConnectionRefusedError, ConnectionResetError, FileNotFoundError, BrokenPipeError, NotADirectoryError)


def rfc3164(pri: int, when: time.struct_time, pid: int, message: str, tag: str = APP_NAME) -> bytes:
    """A message as glibc's syslog(3) sends it to a local socket."""
    stamp = f"{_MONTHS[when.tm_mon - 1]} {when.tm_mday:2d} {when.tm_hour:02d}:{when.tm_min:02d}:{when.tm_sec:02d}"
    return f"<{pri}>{stamp} {tag}[{pid}]: {message}".encode()


def rfc5424(pri: int, time_ns: int, host: str, pid: int, msgid: str, message: str, app: str = APP_NAME) -> bytes:
    """A message as RFC 5424 frames it (version 1, no structured data)."""
    s, frac = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac // 1000:06d}Z"
    return f"<{pri}>1 {stamp} {_token(host, 255)} {app} {pid} {_token(msgid, 32)} - {message}".encode()


def _token(text: str, most: int) -> str:
    """An RFC 5424 header field: 1 to ``most`` printable US-ASCII characters, else ``-``."""
    ok = isinstance(text, str) and 0 < len(text) <= most and all(33 <= ord(c) <= 126 for c in text)
    return text if ok else "-"


class SyslogSink:
    """Events to the syslog daemon at ``address`` (see the module docstring). Connects
    at once: OSError when nothing listens there."""

    def __init__(self, address: str = DEFAULT_SYSLOG, facility: str = "daemon", framing: str = "rfc3164",
                 timeout: float = SEND_TIMEOUT_S):
        if facility not in FACILITIES:
            raise ValueError(f"syslog facility '{facility}' is not one of {', '.join(FACILITIES)}")
        if framing not in FRAMINGS:
            raise ValueError(f"syslog framing '{framing}' is not one of {', '.join(FRAMINGS)}")
        self.address, self.facility, self.framing, self.timeout = address, facility, framing, timeout
        self.name = f"syslog at {address} ({framing}, facility {facility})"
        self._sock: socket.socket | None = None
        self._stalled = False
        self._connect()

    def _connect(self) -> None:
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            s.connect(self.address)
        except OSError:
            s.close()
            raise
        s.settimeout(self.timeout)
        self._sock, self._stalled = s, False

    def frame(self, line: str, event: dict) -> bytes:
        pri = FACILITIES[self.facility] * 8 + SEVERITY_CODES[event["severity"]]
        message = line.rstrip("\n")
        if self.framing == "rfc5424":
            return rfc5424(pri, event["time_ns"], event["host"], os.getpid(), event["kind"], message)
        return rfc3164(pri, time.localtime(event["time_ns"] // 1_000_000_000), os.getpid(), message)

    def write(self, line: str, event: dict) -> None:
        data = self.frame(line, event)
        try:
            self._send(data)
        except _GONE:
            self._connect()              # the daemon restarted: its socket is a new one
            self._send(data)

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            self._connect()
        try:
            self._sock.send(data)
        except (TimeoutError, BlockingIOError):
            if not self._stalled:
                self._stalled = True
                self._sock.settimeout(0)          # the daemon does not read: wait no more
            raise OSError(f"the syslog daemon at {self.address} takes no more messages (its queue is full)") \
                from None
        if self._stalled:
            self._stalled = False
            self._sock.settimeout(self.timeout)

    def reopen(self) -> None:
        self._connect()

    def check(self) -> None:
        """Nothing to watch: a daemon that went away is found on the next send."""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
