"""Load the hand-written program of the four apps (four_apps.c) and read its maps as
xdpmon's snapshot.

``HandwrittenApps()`` compiles and loads it with runtime/dataplane/loader.py, sets the
specs' param defaults, and gives ``.fd``, ``.snapshot_apps(now=None)`` (the same keys
and values as ``build_snapshot(...)["apps"]`` of xdpmon's merged program on the same
frames: its own maps decoded its own way, in xdpmon's order of keys), ``.events()``,
``.counters()``, ``set_param``, ``set_enabled`` and ``.close()``.
"""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

from benchmarks.four_apps import kernel_clock_ns
from runtime.abi.hll import estimate as hll_estimate
from runtime.abi.records import addr_text
from runtime.abi.snapshot import window_bounds

C_FILE = Path(__file__).with_name("four_apps.c")

WINDOW_NS = 1_000_000_000             # syn_flood.syns and flow_watch.flows: window 1s
HLL_M, HLL_AM2, HLL_LOG2M_FP = 4096, 12098219, 12 << 16      # as in four_apps.c
# The specs' param defaults (specs/syn_flood.mon, specs/flow_watch.mon).
PARAMS = {("syn_flood", "per_dst"): 1000, ("flow_watch", "flow_threshold"): 5000}
_CTL_FIELD = {("syn_flood", "per_dst"): "per_dst", ("flow_watch", "flow_threshold"): "flow_threshold"}
COUNTERS = ("app.syn_flood.rate_limited", "app.syn_flood.ringbuf_full", "app.flow_watch.ringbuf_full",
            "map.per_dst.insert_failed", "map.syns.insert_failed", "map.dns_flows.insert_failed")
EV_SYN_FLOOD, EV_ENABLE = 1, 2
_EV_HEAD = struct.Struct("<QI")
_EV_SYN = struct.Struct("<QIHH16s16s")
_HLL_HDR = struct.Struct("<7Q")       # epoch, start, z, zeros, z_last, zeros_last, est


def _raw(obj) -> bytes:
    return ctypes.string_at(ctypes.addressof(obj), ctypes.sizeof(obj))


def _ip(b: bytes) -> str:
    return addr_text("ip", b)


class HandwrittenApps:
    """The hand-written program loaded; syn_flood on for good unless ``syn_enabled`` is false."""

    name = "handwritten"

    def __init__(self, syn_enabled: bool = True):
        from runtime.dataplane.loader import load

        self.loaded = load(C_FILE.read_text())
        self.bpf = self.loaded.bpf
        try:
            ctl = self._ctl()
            ctl.per_dst = PARAMS[("syn_flood", "per_dst")]
            ctl.flow_threshold = PARAMS[("flow_watch", "flow_threshold")]
            ctl.syn_flood_until = (1 << 64) - 1 if syn_enabled else 0
            self._put_ctl(ctl)
            self._events: list[dict] = []
            self.bpf["hw_events"].open_ring_buffer(self._on_event)
        except BaseException:
            self.loaded.close()
            raise

    @property
    def fd(self) -> int:
        return self.loaded.fd

    # ---- control ------------------------------------------------------------------------
    def _ctl(self):
        t = self.bpf["hw_ctl"]
        return t[t.Key(0)]

    def _put_ctl(self, ctl) -> None:
        t = self.bpf["hw_ctl"]
        t[t.Key(0)] = ctl

    def set_param(self, app: str, name: str, value: int) -> None:
        try:
            field = _CTL_FIELD[(app, name)]
        except KeyError:
            raise KeyError(f"no param {app}.{name}: the hand-written apps have "
                           f"{', '.join(f'{a}.{n}' for a, n in _CTL_FIELD)}") from None
        ctl = self._ctl()
        setattr(ctl, field, value)
        self._put_ctl(ctl)

    def set_enabled(self, app: str, until_ns: int) -> None:
        """syn_flood runs while the clock is below ``until_ns`` (0: off)."""
        if app != "syn_flood":
            raise KeyError(f"app {app!r} is always on: only syn_flood is on demand")
        ctl = self._ctl()
        ctl.syn_flood_until = until_ns
        self._put_ctl(ctl)

    # ---- reading ------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        t = self.bpf["hw_counters"]
        return {name: sum(int(v) for v in t.getvalue(t.Key(i))) for i, name in enumerate(COUNTERS)}

    def _percpu_items(self, name: str):
        """(key bytes, [each CPU's value bytes]) of a per-CPU hash map."""
        t = self.bpf[name]
        return [(_raw(k), [_raw(v) for v in t.getvalue(k)]) for k in t.keys()]

    def snapshot_apps(self, now: int | None = None) -> dict:
        now = kernel_clock_ns() if now is None else now
        ctl = self._ctl()
        bounds = {**window_bounds(now, WINDOW_NS), "not_kept": []}
        return {
            "traffic_accounting": {"enabled": True, "params": {}, "stats": {"per_dst": self._per_dst()},
                                   "windows": {}},
            "syn_flood": {"enabled": ctl.syn_flood_until > now, "params": {"per_dst": ctl.per_dst},
                          "stats": {"syns": self._syns(now)}, "windows": {"syns": dict(bounds)}},
            "flow_watch": {"enabled": True, "params": {"flow_threshold": ctl.flow_threshold},
                           "stats": {"flows": self._flows(now)}, "windows": {"flows": dict(bounds)}},
            "dns_flows": {"enabled": True, "params": {}, "stats": {"flows": self._dns_flows(),
                                                                   "rcodes": self._rcodes()},
                          "windows": {}},
        }

    def _per_dst(self) -> list[dict]:
        out = []
        for k, per_cpu in sorted(self._percpu_items("ta_per_dst")):         # xdpmon's order: by address bytes
            packets = sum(struct.unpack_from("<Q", v)[0] for v in per_cpu)
            nbytes = sum(struct.unpack_from("<Q", v, 8)[0] for v in per_cpu)
            out.append({"key": {"ip.dst": _ip(k)}, "value": {"packets": packets, "bytes": nbytes}})
        return out

    def _syns(self, now: int) -> list[dict]:
        """Each destination's count in the window of ``now`` and in the one before."""
        want = now // WINDOW_NS + 1
        out = []
        t = self.bpf["sf_syns"]
        for k, v in sorted((_raw(k), _raw(v)) for k, v in t.items()):
            epoch, n, last = struct.unpack_from("<3Q", v)
            cur, prev = (n, last) if epoch == want else (0, n) if epoch == want - 1 else (0, 0)
            if cur or prev:
                out.append({"key": {"ip.dst": _ip(k)}, "value": {"count": cur}, "last_window": {"count": prev}})
        return out

    def _flows(self, now: int) -> dict:
        t = self.bpf["fw_hll"]
        epoch, _, z, zeros, z_last, zeros_last, _ = _HLL_HDR.unpack_from(_raw(t[t.Key(0)]))
        want = now // WINDOW_NS + 1

        def est(z, zeros):
            return 0 if z == 0 else hll_estimate(z, zeros, HLL_M, HLL_AM2, HLL_LOG2M_FP)
        cur, prev = ((est(z, zeros), est(z_last, zeros_last)) if epoch == want
                     else (0, est(z, zeros)) if epoch == want - 1 else (0, 0))
        return {"value": {"distinct": cur}, "last_window": {"distinct": prev}}

    def _dns_flows(self) -> list[dict]:
        rows = []
        for k, per_cpu in self._percpu_items("dns_flows"):
            src, dst, sport, dport = k[:16], k[16:32], *struct.unpack_from("<HH", k, 32)
            vals = [struct.unpack_from("<4Q", v) for v in per_cpu]
            seen = [v for v in vals if v[0]]          # the CPUs that saw the flow
            value = {"count": sum(v[0] for v in seen), "sum_pkt_len": sum(v[1] for v in seen),
                     "first": min(v[2] for v in seen), "last": max(v[3] for v in seen)}
            key = {"ip.src": _ip(src), "ip.dst": _ip(dst), "udp.sport": sport, "udp.dport": dport}
            # xdpmon lists them by its key's bytes: ip.dst, ip.src, udp.dport, udp.sport (little-endian)
            rows.append((dst + src + struct.pack("<HH", dport, sport), {"key": key, "value": value}))
        return [e for _, e in sorted(rows, key=lambda r: r[0])]

    def _rcodes(self) -> list[dict]:
        t = self.bpf["dns_rcodes"]
        out = []
        for rcode in range(16):
            n = sum(int(v) for v in t.getvalue(t.Key(rcode)))
            if n:
                out.append({"key": {"dns.rcode": rcode}, "value": {"count": n}})
        return out

    # ---- events -------------------------------------------------------------------------
    def _on_event(self, ctx, data, size) -> int:
        rec = ctypes.string_at(data, size)
        ts, kind = _EV_HEAD.unpack_from(rec)
        if kind == EV_SYN_FLOOD:
            _, _, dport, _, src, dst = _EV_SYN.unpack_from(rec)
            self._events.append({"ts": ts, "app": "syn_flood", "rule": 0, "type": "packet",
                                 "fields": {"ip.dst": _ip(dst), "ip.src": _ip(src), "tcp.dport": dport}})
        elif kind == EV_ENABLE:
            self._events.append({"ts": ts, "app": "flow_watch", "rule": 0, "type": "enable",
                                 "enabled": "syn_flood"})
        else:
            raise ValueError(f"a ring buffer record of type {kind}, which four_apps.c does not send")
        return 0

    def events(self) -> list[dict]:
        """The events the program sent since the last call, decoded, in order."""
        self.bpf.ring_buffer_consume()
        out, self._events[:] = list(self._events), []
        return out

    def close(self) -> None:
        self.loaded.close()
