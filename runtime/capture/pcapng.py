"""pcapng, block by block (the format: IETF draft-ietf-opsawg-pcapng).

A file is one or more sections; each starts with a Section Header Block, which
sets the byte order of its blocks, and has its own interfaces (Interface
Description Blocks, numbered from 0 in each section). Every interface has its
own link type, snap length, timestamp resolution (``if_tsresol``: 10^-n or
2^-n seconds, default microseconds) and offset (``if_tsoffset``, seconds).
Frames are Enhanced Packet Blocks (interface, 64-bit timestamp, captured and
original length), Simple Packet Blocks (interface 0, no timestamp: the previous
frame's time is kept) and obsolete Packet Blocks; other blocks are skipped.
Timestamps become integer nanoseconds (rounded down when the resolution is
finer), never floats.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterator

from . import linktypes
from .pcap import Corrupt, Frame, framer, refused_framer, stopped

SHB = 0x0A0D0D0A
IDB, PB, SPB, EPB = 1, 2, 3, 6
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
OPT_END, IF_TSRESOL, IF_TSOFFSET = 0, 9, 14
MAX_BLOCK = 1 << 26


@dataclass
class Interface:
    linktype: int
    snaplen: int
    make: Callable          # (index, ts_ns, data, wire_len) -> Frame
    mult: int = 1000        # ns per timestamp unit, when a whole number
    units: int = 0          # else: timestamp units per second (ns = t * 10^9 // units)
    offset_ns: int = 0

    def ns(self, t: int) -> int:
        ns = t * self.mult if self.units == 0 else t * 1_000_000_000 // self.units
        ns += self.offset_ns
        return ns if ns > 0 else 0


def _options(body: bytes, start: int, end: int, order: str) -> dict[int, bytes]:
    """The first value of each option code in body[start:end]."""
    out: dict[int, bytes] = {}
    hh = struct.Struct(order + "HH")
    off = start
    while off + 4 <= end:
        code, length = hh.unpack_from(body, off)
        if code == OPT_END:
            break
        off += 4
        if off + length > end:
            raise Corrupt(f"an option of {length} bytes runs past its block")
        out.setdefault(code, body[off:off + length])
        off += (length + 3) & ~3
    return out


def _interface(body: bytes, order: str, section: int, number: int, path: str, warn) -> Interface:
    if len(body) < 12:
        raise Corrupt("an interface description block is too short")
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body, 0)
    opts = _options(body, 8, len(body) - 4, order)
    make = framer(linktype)
    if make is None:
        make = refused_framer("link_type")
        if warn is not None:
            warn(f"{path}: section {section} interface {number} has link type {linktype} "
                 f"({linktypes.name(linktype)}): its frames are not replayed (XDP sees Ethernet frames)")
    itf = Interface(linktype, snaplen, make)
    res = opts.get(IF_TSRESOL)
    if res is not None:
        if len(res) != 1:
            raise Corrupt(f"if_tsresol has {len(res)} bytes, not 1")
        v = res[0]
        if v & 0x80:
            itf.mult, itf.units = 0, 1 << (v & 0x7F)
        elif v <= 9:
            itf.mult = 10 ** (9 - v)
        else:
            itf.mult, itf.units = 0, 10 ** v
        if itf.units and 1_000_000_000 % itf.units == 0:
            itf.mult, itf.units = 1_000_000_000 // itf.units, 0
    off = opts.get(IF_TSOFFSET)
    if off is not None:
        if len(off) != 8:
            raise Corrupt(f"if_tsoffset has {len(off)} bytes, not 8")
        itf.offset_ns = struct.unpack(order + "q", off)[0] * 1_000_000_000
    return itf


def pcapng_frames(f, path: str, warn=None) -> Iterator[Frame]:
    read = f.read
    n = 0
    order = "<"
    section = -1
    itfs: list[Interface] = []
    last_ts = 0
    u32 = struct.Struct("<I")
    epb = struct.Struct("<IIIII")
    pb = struct.Struct("<HHIIII")
    while True:
        try:
            head = read(8)
            if not head:
                return
            if len(head) < 8:
                raise Corrupt(f"a block header needs 8 bytes but the file ends after {len(head)}")
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                bom = _read_exact4(read)
                order = _BOM.get(bom)
                if order is None:
                    raise Corrupt(f"a section header with byte-order magic {bom.hex()}")
                blen = struct.unpack_from(order + "I", head, 4)[0]
                if blen < 28:
                    raise Corrupt(f"a section header block of {blen} bytes")
                body = _block_body(read, blen, 12)
                major = struct.unpack_from(order + "H", body, 0)[0]
                if major != 1:
                    raise Corrupt(f"pcapng version {major} (only 1 exists)")
                _check_trailer(body, blen, order)
                section += 1
                itfs = []
                u32 = struct.Struct(order + "I")
                epb = struct.Struct(order + "IIIII")
                pb = struct.Struct(order + "HHIIII")
                continue
            if section < 0:
                raise Corrupt("no section header block first")
            btype, blen = struct.unpack(order + "II", head)
            body = _block_body(read, blen, 8)
            _check_trailer(body, blen, order)
            if btype == EPB or btype == PB:
                if len(body) < 24:
                    raise Corrupt(f"a packet block of {blen} bytes")
                if btype == EPB:
                    if_id, hi, lo, caplen, wire = epb.unpack_from(body, 0)
                else:
                    if_id, _drops, hi, lo, caplen, wire = pb.unpack_from(body, 0)
                if 20 + caplen > len(body) - 4:
                    raise Corrupt(f"a packet of {caplen} bytes in a block of {blen}")
                itf = _itf(itfs, if_id)
                last_ts = itf.ns((hi << 32) | lo)
                data = body[20:20 + caplen]
            elif btype == SPB:
                itf = _itf(itfs, 0)
                wire = u32.unpack_from(body, 0)[0]
                caplen = min(wire, len(body) - 8)
                if itf.snaplen:
                    caplen = min(caplen, itf.snaplen)
                data = body[4:4 + caplen]
            elif btype == IDB:
                itfs.append(_interface(body, order, section, len(itfs), path, warn))
                continue
            else:
                continue
        except Corrupt as e:
            raise stopped(path, n, f.tell(), str(e)) from None
        yield itf.make(n, last_ts, data, wire)
        n += 1


def _read_exact4(read) -> bytes:
    b = read(4)
    if len(b) != 4:
        raise Corrupt(f"a section header needs its byte-order magic but the file ends after {len(b)} bytes")
    return b


def _block_body(read, blen: int, done: int) -> bytes:
    """The rest of a block of ``blen`` bytes whose first ``done`` bytes were read."""
    if blen < 12 or blen % 4 or blen > MAX_BLOCK:
        raise Corrupt(f"a block length of {blen}")
    if blen - done < 4:
        raise Corrupt(f"a block length of {blen}")
    body = read(blen - done)
    if len(body) != blen - done:
        raise Corrupt(f"a block of {blen} bytes but the file ends {blen - done - len(body)} bytes short")
    return body


def _check_trailer(body: bytes, blen: int, order: str) -> None:
    if struct.unpack_from(order + "I", body, len(body) - 4)[0] != blen:
        raise Corrupt("a block whose two lengths differ")


def _itf(itfs: list[Interface], if_id: int) -> Interface:
    if if_id >= len(itfs):
        raise Corrupt(f"a packet of interface {if_id}, of which the section has {len(itfs)}")
    return itfs[if_id]
