"""A program's maps, read and written by the manifest's layouts.

``MapAccess`` is everything that does not depend on where the bytes live:

- ``init()``: params to their defaults (the kernel's maps start zeroed),
- ``set_param`` / ``params()``, ``set_enabled`` / ``ctl()``: run-time control,
- ``counters()``, ``raw_state()``: every map's bytes as a runtime.abi.snapshot.RawState,
  ``app_snapshot(app, now, stats)``: one app's part of a snapshot, reading only its maps,
  ``entry_chunks(name)``: a keyed map's entries in bounded chunks (the exporter's top keys),
- ``open_events(sink)`` / ``poll_events(timeout_ms=None)``: the program's ring buffer,
  each record decoded (runtime.abi.records.EventDecoder) and handed to ``sink``;
  without a timeout, what is waiting now; with one, waiting up to ``timeout_ms`` for
  records (the live ASL host's consumer thread: runtime/asl/consumer.py),
- the filters: ``filter_state`` / ``set_filter_state``, ``block_put`` / ``block_delete``
  / ``block_items`` (the blocklist hash map and trie, in the program's 16-byte address form),
  ``set_interfaces`` / ``interface_counters`` (frames and bytes per ifindex).

A backend says only how bytes are read and written: ``ProgramMaps`` for a
program loaded with BCC, ``ReferenceMaps`` (runtime/engines/reference/engine.py)
for the reference interpreter's emulated maps.
"""

from __future__ import annotations

import ctypes
import select
import struct
import threading
import time
from typing import Callable, Iterator

from runtime.abi.manifest import Manifest
from runtime.dataplane import libbpf, sets
from runtime.abi.records import (EventDecoder, decode_control, decode_filter_state, decode_u64s, derive_counters,
                                 encode_control, encode_filter_state, encode_u64s, filter_state_ifaces,
                                 with_filter_state_ifaces)
from runtime.abi.snapshot import RawState, app_maps, build_app_snapshot

from runtime.abi import percpu
from runtime.abi.entries import Entries

from .batch import entry_batches

U64_MAX = (1 << 64) - 1


def entries_in_use(items, key_size: int) -> Entries:
    """The (key, value) items of a keyed array whose value is not all zero, in key order:
    what a hash map of the same keys holds (a snapshot leaves out entries whose values
    are all empty either way)."""
    used = sorted((k, v) for k, v in items if any(v))
    return Entries.of(used, key_size, len(used[0][1]) if used else 0)


class MapAccess:
    """The maps of one program, by the manifest; subclasses implement the byte
    primitives ``_read``, ``_write``, ``_percpu_sums``, ``_hash_items``,
    ``_array_values``, ``_put``, ``_delete``, ``_percpu_items``, ``_open_rings`` and
    ``_consume_rings``."""

    def __init__(self, manifest: Manifest | dict):
        self.manifest = Manifest.of(manifest)
        self._sink: Callable[[dict], object] | None = None

    # ---- the byte primitives -------------------------------------------------------------
    def _read(self, name: str, index: int) -> bytes:
        """The value at ``index`` of array map ``name``."""
        raise NotImplementedError

    def _write(self, name: str, index: int, data: bytes) -> None:
        raise NotImplementedError

    def _percpu_sums(self, name: str, n: int) -> list[int]:
        """The u64 values 0..n-1 of a per-CPU array, each summed over the CPUs."""
        raise NotImplementedError

    def _hash_items(self, name: str) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    def _array_values(self, name: str) -> list[bytes]:
        raise NotImplementedError

    def _put(self, name: str, key: bytes, value: bytes) -> None:
        """Create or replace the entry ``key`` of hash-like map ``name`` (the blocklist trie)."""
        raise NotImplementedError

    def _delete(self, name: str, key: bytes) -> bool:
        """Delete the entry ``key``; False when there was none."""
        raise NotImplementedError

    def _percpu_items(self, name: str) -> list[tuple[bytes, list[int]]]:
        """(key, its u64 words summed over the CPUs) of every entry of a per-CPU hash."""
        raise NotImplementedError

    def _open_rings(self) -> None:
        """Start taking the records of every app's ring buffer (to ``_deliver``)."""
        raise NotImplementedError

    def _consume_rings(self) -> None:
        """Hand every record waiting in the ring buffers to ``_deliver``: the rings
        in manifest order, each in its order."""
        raise NotImplementedError

    def _poll_rings(self, timeout_ms: int) -> None:
        """As ``_consume_rings``, first waiting up to ``timeout_ms`` for a record
        when none waits. A backend whose records do not arrive by themselves (the
        reference interpreter's) consumes, then sleeps: a poll loop never spins."""
        self._consume_rings()
        time.sleep(timeout_ms / 1000)

    # ---- params and control --------------------------------------------------------------
    def init(self) -> None:
        defaults = {p.index: p.default for p in self.manifest.params}
        if defaults:
            self._write_params(defaults)

    def params(self) -> list[int]:
        return decode_u64s(self._read(self.manifest.params_map, 0), len(self.manifest.params))

    def _write_params(self, values: dict[int, int]) -> None:
        data = self._read(self.manifest.params_map, 0)
        v = decode_u64s(data, len(data) // 8)
        for i, val in values.items():
            v[i] = val
        self._write(self.manifest.params_map, 0, encode_u64s(v, len(data)))

    def set_param(self, app: str, name: str, value: int) -> None:
        p = self.manifest.param(app, name)
        if not 0 <= value <= U64_MAX:
            raise OverflowError(f"param {app}.{name}: {value} does not fit in 64 bits")
        self._write_params({p.index: value})

    def ctl(self) -> tuple[int, list[int]]:
        """(enable mask, enabled-until time of each enable bit)."""
        mask, _, until = decode_control(self._read(self.manifest.control_map, 0), self.manifest.n_bits)
        return mask, until

    def set_enabled(self, app: str, until_ns: int) -> None:
        """Enable an on-demand app until ``until_ns`` (U64_MAX: until disabled); 0 disables."""
        data = self._read(self.manifest.control_map, 0)
        mask, _, until = decode_control(data, self.manifest.n_bits)
        bit = self.manifest.app(app).enable_bit
        if bit < 0:
            raise KeyError(f"app {app!r} is always on: it has no enable bit")
        until[bit] = until_ns
        # next_change 0: the program recomputes its enable mask on the next packet
        self._write(self.manifest.control_map, 0, encode_control(mask, 0, until, len(data)))

    # ---- the filters (runtime/control/blocklist.py is their one writer) -------------------------
    def filter_state(self) -> tuple[int, int]:
        """(entries the blocklist holds, flags) as the program reads them."""
        return self.filter_state_full()[:2]

    def filter_state_full(self) -> tuple[int, int, int, tuple[int, ...]]:
        """(entries, flags, the trie's longest prefix length, the hash map's lengths)."""
        f = self.manifest.filters
        return decode_filter_state(self._read(f.state_map, 0), f.lens_max)

    def set_filter_state(self, entries: int, flags: int, trie_longest: int = 0, lens=()) -> None:
        """The blocklist's part of the filter state (the interfaces counted are kept)."""
        f = self.manifest.filters
        n_ifaces = filter_state_ifaces(self._read(f.state_map, 0))
        self._write(f.state_map, 0, encode_filter_state(entries, flags, trie_longest, lens, f.lens_max, n_ifaces))

    def block_put(self, prefixlen: int, addr16: bytes, expires: int, hits: int = 0, hashed: bool = False) -> None:
        """The blocklist entry of ``addr16``/``prefixlen`` (the program's 16-byte form), in
        the hash map (``hashed``: its length is one the filter state lists) or the trie."""
        self._put(*self._block_where(prefixlen, addr16, hashed), _BLOCK_V.pack(expires, hits, prefixlen))

    def block_delete(self, prefixlen: int, addr16: bytes, hashed: bool = False) -> bool:
        return self._delete(*self._block_where(prefixlen, addr16, hashed))

    def block_bits_put(self, word: int, value: int) -> None:
        """Word ``word`` of the hash map's bit array (runtime/control/blocklist.py keeps it)."""
        self._write(self.manifest.filters.bits_map, word, struct.pack("=Q", value))

    def _block_where(self, prefixlen: int, addr16: bytes, hashed: bool) -> tuple[str, bytes]:
        f = self.manifest.filters
        return (f.hash_map if hashed else f.blocklist_map), _block_key(prefixlen, addr16)

    def block_items(self) -> dict[tuple[int, bytes], tuple[int, int, int]]:
        """(prefixlen, addr16) -> (expires, hits, prefixlen) of every blocklist entry."""
        f = self.manifest.filters
        out = {}
        for name in (f.blocklist_map, f.hash_map):
            for k, v in self._hash_items(name):
                plen, = _U32.unpack_from(k)
                out[(plen, bytes(k[4:20]))] = _BLOCK_V.unpack(v[:_BLOCK_V.size])
        return out

    def set_interfaces(self, ifindexes) -> None:
        """Count frames and bytes of these interfaces from now on (the program never
        inserts an interface: it counts only those inserted here)."""
        f = self.manifest.filters
        ifindexes = list(dict.fromkeys(ifindexes))
        if len(ifindexes) > f.max_interfaces:
            raise ValueError(f"{len(ifindexes)} interfaces: the program counts frames of at most "
                             f"{f.max_interfaces}")
        have = {k for k, _ in self._percpu_items(f.interfaces_map)}
        for i in ifindexes:
            k = _U32.pack(i)
            if k not in have:
                self._put(f.interfaces_map, k, bytes(16))
                have.add(k)
        # the program looks the interface map up only while the filter state counts some
        self._write(f.state_map, 0, with_filter_state_ifaces(self._read(f.state_map, 0), len(have)))

    def interface_counters(self) -> dict[int, dict[str, int]]:
        """{ifindex: {"frames", "bytes"}} of the interfaces counted (set_interfaces)."""
        out = {}
        for k, words in self._percpu_items(self.manifest.filters.interfaces_map):
            out[_U32.unpack_from(k)[0]] = {"frames": words[0], "bytes": words[1]}
        return dict(sorted(out.items()))

    # ---- reading ---------------------------------------------------------------------------
    def _indexed_items(self, m) -> Entries:
        """The entries in use of keyed array ``m`` (entry i holds the key of i's bits)."""
        return entries_in_use(((m.index.key(i), v) for i, v in enumerate(self._array_values(m.name))),
                              m.index.key_size)

    def counters(self) -> list[int]:
        """The global counters, summed over the CPUs, frames and verdict.pass derived."""
        names = self.manifest.counter_names
        return derive_counters(names, self._percpu_sums(self.manifest.counters_map, len(names)))

    def raw_state(self, maps: list[str] | None = None, counters: bool = True) -> RawState:
        """The bytes of every state map (or of those named in ``maps``), the
        counters (unless ``counters`` is false), params and control block."""
        raw = RawState()
        for m in self.manifest.state_maps:
            if maps is None or m.name in maps:
                if m.index:
                    raw.maps[m.name] = self._indexed_items(m)
                else:
                    raw.maps[m.name] = self._hash_items(m.name) if m.hashed else self._array_values(m.name)
        raw.counters = self.counters() if counters else []
        raw.params = self.params()
        raw.ctl_mask, raw.ctl_until = self.ctl()
        return raw

    def entry_chunks(self, name: str) -> Iterator[Entries]:
        """The entries of keyed state map ``name`` as ``Entries``, chunk after chunk (a
        backend reading a million entries gives them a batch at a time, so a reader that
        folds each chunk holds one; here: all at once)."""
        m = self.manifest.state_map(name)
        if m.index:
            yield self._indexed_items(m)
        else:
            yield from self._hash_chunks(name)

    def _hash_chunks(self, name: str) -> Iterator[Entries]:
        items = self._hash_items(name)
        if not isinstance(items, Entries):
            items = list(items)
            if not items:
                return
            items = Entries.of(items, len(items[0][0]), len(items[0][1]))
        yield items

    def app_snapshot(self, app: str, now: int, stats: list[str] | None = None) -> dict:
        """App ``app``'s part of the snapshot on the clock ``now`` (runtime.abi.snapshot
        build_app_snapshot), with the statistics named in ``stats`` (default: all);
        only their maps are read."""
        raw = self.raw_state(app_maps(self.manifest, app, stats), counters=False)
        return build_app_snapshot(self.manifest, raw, app, now, stats)

    # ---- events ----------------------------------------------------------------------------
    def open_events(self, sink: Callable[[dict], object], raw: bool = False) -> None:
        """Call ``sink(event dict)`` for every record of every app's ring buffer,
        from ``poll_events()`` on (``raw``: ``sink(record bytes)``, undecoded: the
        live ASL host decodes in each app's worker); called again, the records go
        to the new ``sink`` (the rings stay open: a live engine's queue gives them
        to the ASL host)."""
        opened = self._sink is not None
        self._sink = sink
        if raw:
            self._deliver = sink
        else:
            decode = EventDecoder(self.manifest)
            self._deliver = lambda record: sink(decode(record))
        if not opened:
            self._open_rings()

    def _deliver(self, record: bytes) -> None:
        raise AssertionError("open_events() first")

    def poll_events(self, timeout_ms: int | None = None) -> None:
        """Hand on the records waiting; with ``timeout_ms``, wait that long for one
        when none waits."""
        if self._sink is not None:
            if timeout_ms is None:
                self._consume_rings()
            else:
                self._poll_rings(timeout_ms)


_U32 = struct.Struct("=I")
_BLOCK_V = struct.Struct("=QQQ")             # struct xm_block_v: expires, hits, prefixlen


def _block_key(prefixlen: int, addr16: bytes) -> bytes:
    """struct xm_block_key: the prefix length (host order), the 16 address bytes."""
    if len(addr16) != 16 or not 0 <= prefixlen <= 128:
        raise ValueError(f"a blocklist key is a prefix length 0..128 and 16 address bytes, "
                         f"not {prefixlen} and {len(addr16)} bytes")
    return _U32.pack(prefixlen) + addr16


def _bytes(obj) -> bytes:
    return ctypes.string_at(ctypes.addressof(obj), ctypes.sizeof(obj))


class ProgramMaps(MapAccess):
    """The maps of a program loaded with BCC (``bpf``: its bcc.BPF object)."""

    def __init__(self, bpf, manifest: Manifest | dict):
        super().__init__(manifest)
        self.bpf = bpf
        # the statistics maps with a value per CPU, combined when read (runtime/abi/percpu.py)
        self._percpu_values = {m.name: m.percpu for m in self.manifest.state_maps if m.percpu}
        self._waiter = None             # select.poll on the rings' epoll fd (poll_events with a timeout)
        self._ring_lock = threading.Lock()   # libbpf's ring_buffer takes one consumer at a time

    def init(self) -> None:
        super().init()
        sets.fill(self.bpf, self.manifest.raw.get("sets"))     # large `in` sets, before any packet

    def _read(self, name: str, index: int) -> bytes:
        t = self.bpf[name]
        return _bytes(t[t.Key(index)])

    def _write(self, name: str, index: int, data: bytes) -> None:
        t = self.bpf[name]
        t[t.Key(index)] = t.Leaf.from_buffer_copy(data)

    def _percpu_sums(self, name: str, n: int) -> list[int]:
        t = self.bpf[name]
        return [sum(int(v.value if hasattr(v, "value") else v) for v in t.getvalue(t.Key(i))) for i in range(n)]

    def _hash_chunks(self, name: str) -> Iterator[Entries]:
        """One ``Entries`` per BPF_MAP_LOOKUP_BATCH call (runtime/dataplane/batch.py), the
        per-CPU values combined: memory for a chunk, not for the map's declared size."""
        t = self.bpf[name]
        value = self._percpu_values.get(name)
        for e in entry_batches(t.map_fd, ctypes.sizeof(t.Key), ctypes.sizeof(t.Leaf)):
            if value is None:
                yield e
            else:
                ncpu = ctypes.sizeof(t.Leaf) // ctypes.sizeof(t.sLeaf)     # BCC: a value per possible CPU
                yield Entries(e.key_bytes, percpu.combine(e.value_bytes, len(e), ncpu, value), e.key_size,
                              value["size"])

    def _entries(self, name: str) -> Entries:
        """Every entry, keys and values end to end (the chunks joined)."""
        t = self.bpf[name]
        value = self._percpu_values.get(name)
        parts = list(self._hash_chunks(name))
        return Entries(b"".join(e.key_bytes for e in parts), b"".join(e.value_bytes for e in parts),
                       ctypes.sizeof(t.Key), value["size"] if value is not None else ctypes.sizeof(t.Leaf))

    def _hash_items(self, name: str) -> Entries:
        return self._entries(name)

    def _array_values(self, name: str) -> list[bytes]:
        e = self._entries(name)                             # an array's entries come in index order
        return [e.value(i) for i in range(len(e))]

    def _put(self, name: str, key: bytes, value: bytes) -> None:
        t = self.bpf[name]
        if hasattr(t, "sLeaf"):            # a per-CPU map: every CPU's value is ``value``
            value = value * (ctypes.sizeof(t.Leaf) // ctypes.sizeof(t.sLeaf))
        t[t.Key.from_buffer_copy(key)] = t.Leaf.from_buffer_copy(value)

    def _delete(self, name: str, key: bytes) -> bool:
        t = self.bpf[name]
        try:
            del t[t.Key.from_buffer_copy(key)]
        except KeyError:
            return False
        return True

    def _percpu_items(self, name: str) -> list[tuple[bytes, list[int]]]:
        t = self.bpf[name]
        n = ctypes.sizeof(t.sLeaf) // 8
        out = []
        for k in t.keys():
            sums = [0] * n
            for v in t.getvalue(k):
                words = struct.unpack(f"={n}Q", _bytes(v))
                sums = [a + b for a, b in zip(sums, words)]
            out.append((_bytes(k), sums))
        return out

    def _open_rings(self) -> None:
        """One callback for every ring: the record copied out (the kernel reuses its
        room once the callback returns) and handed to ``_deliver``. Registered with
        BCC's own callback type, not through ``open_ring_buffer``, whose Python
        wrapper costs a third of the time a record takes to reach a queue."""
        failed = self._failed = []
        string_at = ctypes.string_at

        def cb(ctx, data, n):
            try:
                self._deliver(string_at(data, n))
            except Exception as e:     # raised again once the poll returns: ctypes would swallow it
                failed.append(e)
            return 0
        from bcc import table
        cb_type = getattr(table, "_RINGBUF_CB_TYPE", None)
        self._ring_cbs = []
        for ring in dict.fromkeys(app.ringbuf for app in self.manifest.apps if app.ringbuf):
            if cb_type is None or not hasattr(self.bpf, "_open_ring_buffer"):
                self.bpf[ring].open_ring_buffer(cb)            # another BCC: its documented way
                continue
            fn = cb_type(cb)
            self._ring_cbs.append(fn)                          # ctypes callbacks must outlive their use
            self.bpf._open_ring_buffer(self.bpf[ring].map_fd, fn, None)

    def _consume_rings(self) -> None:
        """libbpf's ring_buffer__consume on BCC's ring buffer, the GIL held across
        the records (runtime/dataplane/libbpf.py); one thread at a time (a live
        engine's snapshot may poll while the ASL host's consumer thread does)."""
        rb = getattr(self.bpf, "_ringbuf_manager", None)
        if rb:
            with self._ring_lock:
                libbpf.ring_buffer_consume(rb)
                self._raise_failed()

    def _poll_rings(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` on the rings' epoll fd (the GIL released, as
        BCC's ring_buffer_poll would), then consume what waits. Not
        ring_buffer_poll itself: its callbacks would each take and release the GIL,
        and a worker thread waiting for it then runs between any two records."""
        rb = getattr(self.bpf, "_ringbuf_manager", None)
        if not rb:
            return
        if self._waiter is None:
            self._waiter = select.poll()
            self._waiter.register(libbpf.ring_buffer_epoll_fd(rb), select.POLLIN)
        if self._waiter.poll(timeout_ms):
            with self._ring_lock:
                libbpf.ring_buffer_consume(rb)
                self._raise_failed()

    def _raise_failed(self) -> None:
        """The first exception a record's delivery raised during the last poll (the
        other records were delivered), with how many failed."""
        if self._failed:
            first, n = self._failed[0], len(self._failed)
            self._failed.clear()
            if n > 1:
                first.add_note(f"({n} records of this poll failed; this is the first)")
            raise first
