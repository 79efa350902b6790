"""Read frames from pcap and pcapng captures, exactly.

``read_frames(path, warn=None)`` yields ``Frame(index, ts_ns, data, wire_len,
refused)``:

* ``ts_ns``: the capture time in integer nanoseconds, never through a float
  (pcap in micro- or nanoseconds; pcapng in each interface's own resolution and
  offset, rounded down when finer than a nanosecond);
* ``data``: what the capture kept of the frame, as the Ethernet frame an XDP
  program sees (Linux cooked frames are converted: runtime/capture/linktypes.py);
* ``wire_len``: the frame's length on the wire, more than ``len(data)`` when the
  capture cut it at its snap length;
* ``refused``: None, or why the frame cannot be replayed (a key of ``REFUSALS``,
  or ``"short"``); ``data`` is then empty.

pcapng files are read block by block here (runtime/capture/pcapng.py): dpkt's
reader takes the link type and timestamp resolution of the first interface for
every frame and gives float timestamps. Classic pcap is read here too, for the
original length of cut frames (dpkt's reader yields only the captured bytes).

A truncated or corrupt file yields what is readable and then raises
``CaptureError`` saying where and why reading stopped, so callers can report
the frames processed and exit with status 1. ``warn(message)`` hears about
what is readable but not replayed (an interface of another link type).
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator, NamedTuple

from . import linktypes
from .linktypes import REFUSALS  # noqa: F401  (re-exported: the engines count these)

DLT_EN10MB = linktypes.ETHERNET
# No frame is this long (pcapng blocks are at most 16 MiB in libpcap, pcap frames
# far less): a longer record is corruption, refused before it is read.
MAX_RECORD = 16 << 20

_PCAP_MAGICS = {                 # first 4 bytes -> (byte order, nanoseconds)
    b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class CaptureError(Exception):
    """The capture cannot be read (further). ``frames`` is how many were read."""

    def __init__(self, message: str, frames: int = 0):
        super().__init__(message)
        self.frames = frames


class Frame(NamedTuple):
    index: int
    ts_ns: int
    data: bytes
    wire_len: int | None = None        # None: len(data)
    refused: str | None = None


class Corrupt(Exception):
    """Raised inside a reader: the file stops making sense here (message: why)."""


def stopped(path: str, n: int, pos, why: str) -> CaptureError:
    return CaptureError(f"{path}: stopped after frame {n} near byte {pos}: "
                        f"the file is truncated or corrupt ({why})", n)


def framer(linktype: int) -> Callable[[int, int, bytes, int], Frame] | None:
    """``make(index, ts_ns, data, wire_len)`` giving the Frame of a link type, or
    None when its frames cannot be replayed."""
    if linktype == linktypes.ETHERNET:
        return Frame
    conv = linktypes.CONVERTERS.get(linktype)
    if conv is None:
        return None

    def make(index: int, ts_ns: int, data: bytes, wire_len: int) -> Frame:
        eth, wire, why = conv(data, wire_len)
        return Frame(index, ts_ns, eth, wire) if why is None else Frame(index, ts_ns, b"", 0, why)
    return make


def refused_framer(reason: str):
    return lambda index, ts_ns, data, wire_len: Frame(index, ts_ns, b"", 0, reason)


def _read_exact(read, n: int, what: str) -> bytes:
    data = read(n)
    if len(data) != n:
        raise Corrupt(f"{what} needs {n} bytes but the file ends after {len(data)}")
    return data


def _pcap_frames(f, path: str, order: str, nano: bool) -> Iterator[Frame]:
    hdr = f.read(24)
    if len(hdr) < 24:
        raise CaptureError(f"{path}: not a pcap or pcapng file (a pcap header is 24 bytes, the file has {len(hdr)})")
    linktype = struct.unpack_from(order + "I", hdr, 20)[0] & 0x03FFFFFF   # the low bits: FCS flags above
    make = framer(linktype)
    if make is None:
        raise CaptureError(f"{path}: link type {linktype} ({linktypes.name(linktype)}) is not Ethernet; xdpmon "
                           f"reads Ethernet and Linux cooked (SLL, SLL2) captures (XDP sees Ethernet frames)")
    rec = struct.Struct(order + "IIII")
    scale = 1 if nano else 1000
    read = f.read
    n = 0
    while True:
        try:
            h = read(16)
            if not h:
                return
            if len(h) < 16:
                raise Corrupt(f"a record header needs 16 bytes but the file ends after {len(h)}")
            sec, frac, caplen, wire = rec.unpack(h)
            if caplen > MAX_RECORD:
                raise Corrupt(f"a record claims {caplen} bytes, more than any frame ({MAX_RECORD} bytes)")
            data = _read_exact(read, caplen, "a record")
        except Corrupt as e:
            raise stopped(path, n, f.tell(), str(e)) from None
        yield make(n, sec * 1_000_000_000 + frac * scale, data, wire)
        n += 1


class _Stream:
    """A capture read front to back, never sought, so that a FIFO or a pipe
    (``tcpdump -w -``) is read like a file: the magic is peeked and given back,
    the position is counted (for "stopped near byte N")."""

    def __init__(self, f, head: bytes):
        self._f, self._head, self.pos = f, head, 0

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head[:n] if n >= 0 else self._head, self._head[n:] if n >= 0 else b""
            if n < 0 or len(out) < n:
                out += self._f.read(-1 if n < 0 else n - len(out))
        else:
            out = self._f.read(n)
        self.pos += len(out)
        return out

    def tell(self) -> int:
        return self.pos


def read_frames(path: str, warn: Callable[[str], object] | None = None) -> Iterator[Frame]:
    from .pcapng import pcapng_frames

    with open(path, "rb") as raw:
        magic = raw.read(4)
        f = _Stream(raw, magic)
        if len(magic) < 4:
            raise CaptureError(f"{path}: not a capture file (only {len(magic)} bytes)")
        if magic == PCAPNG_MAGIC:
            yield from pcapng_frames(f, path, warn)
        elif magic in _PCAP_MAGICS:
            yield from _pcap_frames(f, path, *_PCAP_MAGICS[magic])
        else:
            raise CaptureError(f"{path}: not a pcap or pcapng file (it starts with {magic.hex()})")
