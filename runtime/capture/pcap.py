"""Read frames from pcap and pcapng files with dpkt.

``read_frames(path)`` yields ``Frame(index, ts_ns, data)``; only Ethernet link
types are accepted. A truncated or corrupt file yields what is readable and
then raises ``CaptureError`` saying where and why reading stopped, so callers
can report the frames processed and exit with status 1. The file is read
front to back, never sought: a FIFO or a pipe carrying a capture (``tcpdump -w -``)
is replayed as it arrives, until its writer closes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

import dpkt

DLT_EN10MB = 1
_LINKTYPE_NAMES = {0: "BSD loopback (NULL)", 1: "Ethernet", 101: "raw IP", 105: "IEEE 802.11",
                   113: "Linux cooked (SLL)", 127: "802.11 radiotap", 228: "raw IPv4", 229: "raw IPv6",
                   276: "Linux cooked v2 (SLL2)"}


class CaptureError(Exception):
    """The capture cannot be read (further). ``frames`` is how many were read."""

    def __init__(self, message: str, frames: int = 0):
        super().__init__(message)
        self.frames = frames


@dataclass(frozen=True)
class Frame:
    index: int
    ts_ns: int
    data: bytes


def _ts_ns(ts) -> int:
    # dpkt gives float seconds for pcap (decimal for nanosecond pcap) and pcapng.
    from decimal import Decimal
    return int(Decimal(str(ts)) * 1_000_000_000)


class _TruncatedRead(Exception):
    pass


# No frame is this long (pcapng blocks are at most 16 MiB in libpcap, pcap frames
# 256 KiB): a longer record is a corrupt length, refused before it is read.
MAX_RECORD = 16 << 20


class _CheckedFile:
    """The capture as dpkt reads it: the magic peeked without seeking (a FIFO or a
    pipe cannot seek, and is read like a file), the bytes read counted (the position,
    also in a pipe), a short read in the middle of a record raised (dpkt would
    silently return the partial record of a truncated capture) and a record longer
    than MAX_RECORD refused (dpkt would try to read it all)."""

    def __init__(self, f):
        self.f = f
        self.pos = 0
        self._head = b""

    def magic(self) -> bytes:
        self._head = self.f.read(4)
        return self._head

    def read(self, n=-1):
        if n is None or n < 0 or n > MAX_RECORD:
            raise _TruncatedRead(f"a record claims {n} bytes, more than any frame ({MAX_RECORD} bytes)")
        head, self._head = self._head[:n], self._head[n:]
        data = head + self.f.read(n - len(head)) if n > len(head) else head
        if n and 0 < len(data) < n:
            raise _TruncatedRead(f"a record needs {n} bytes but the file ends after {len(data)}")
        self.pos += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.f, name)


def _open(f: _CheckedFile, path: str):
    magic = f.magic()
    if len(magic) < 4:
        raise CaptureError(f"{path}: not a capture file (only {len(magic)} bytes)")
    try:
        if magic == b"\x0a\x0d\x0d\x0a":
            return dpkt.pcapng.Reader(f)
        return dpkt.pcap.Reader(f)
    except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, EOFError, _TruncatedRead) as e:
        raise CaptureError(f"{path}: not a pcap or pcapng file ({e or type(e).__name__})")


def read_frames(path: str) -> Iterator[Frame]:
    with open(path, "rb") as raw:
        f = _CheckedFile(raw)
        reader = _open(f, path)
        dlt = reader.datalink()
        if dlt != DLT_EN10MB:
            name = _LINKTYPE_NAMES.get(dlt, "unknown")
            raise CaptureError(f"{path}: link type {dlt} ({name}) is not Ethernet; xdpmon reads Ethernet "
                               f"captures only (XDP sees Ethernet frames)")
        n = 0
        it = iter(reader)
        while True:
            try:
                ts, data = next(it)
            except StopIteration:
                return
            except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, EOFError, _TruncatedRead,
                    struct.error) as e:
                raise CaptureError(f"{path}: stopped after frame {n} near byte {f.pos}: "
                                   f"the file is truncated or corrupt ({e or type(e).__name__})", n)
            yield Frame(n, _ts_ns(ts), bytes(data))
            n += 1
