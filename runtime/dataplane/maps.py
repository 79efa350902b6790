"""The control plane of a loaded program: its maps, read and written through BCC
with the layouts of the manifest.

- ``init(manifest)``: params to their defaults (the kernel's maps start zeroed),
- ``set_param`` / ``enable`` / ``disable``: run-time control,
- ``raw_state()``: every map's bytes as a runtime.abi.snapshot.RawState,
- ``open_events(callback)`` / ``poll_events()``: the apps' ring buffers, decoded.
"""

from __future__ import annotations

import ctypes
import struct

from runtime.abi.snapshot import RawState, decode_fields

U64_MAX = (1 << 64) - 1


def _bytes(obj) -> bytes:
    return ctypes.string_at(ctypes.addressof(obj), ctypes.sizeof(obj))


class ProgramMaps:
    def __init__(self, bpf, manifest: dict):
        self.bpf = bpf
        self.m = manifest
        self.apps = {a["name"]: a for a in manifest["apps"]}
        self.events_by_action = {e["action"]: e for e in manifest["events"]}
        self.actions = {a["id"]: (app["name"], a) for app in manifest["apps"] for r in app["rules"]
                        for a in r["actions"]}
        self._event_sink = None

    # ---- params and control ----------------------------------------------------------
    def init(self) -> None:
        slots = self.m["params"]["slots"]
        if slots:
            self._write_params({s["index"]: s["default"] for s in slots})

    def _params_struct(self):
        t = self.bpf[self.m["params"]["map"]]
        return t, t[ctypes.c_uint32(0)]

    def _write_params(self, values: dict[int, int]) -> None:
        t, v = self._params_struct()
        for i, val in values.items():
            v.v[i] = val
        t[ctypes.c_uint32(0)] = v

    def set_param(self, app: str, name: str, value: int) -> None:
        slot = next(s for s in self.m["params"]["slots"] if s["app"] == app and s["name"] == name)
        self._write_params({slot["index"]: value})

    def params(self) -> list[int]:
        _, v = self._params_struct()
        n = len(self.m["params"]["slots"])
        return [int(v.v[i]) for i in range(n)]

    def _ctl(self):
        t = self.bpf[self.m["control"]["map"]]
        return t, t[ctypes.c_uint32(0)]

    def set_enabled(self, app: str, until_ns: int) -> None:
        """Enable an on-demand app until ``until_ns`` (U64_MAX: until disabled); 0 disables."""
        idx = self.apps[app]["index"]
        t, c = self._ctl()
        c.until[idx] = until_ns
        c.next_change = 0            # make the program recompute its enable mask
        t[ctypes.c_uint32(0)] = c

    def ctl(self) -> tuple[int, list[int]]:
        _, c = self._ctl()
        return int(c.mask), [int(c.until[i]) for i in range(self.m["control"]["n_apps"])]

    # ---- reading ---------------------------------------------------------------------
    def counters(self) -> list[int]:
        t = self.bpf[self.m["counters"]["map"]]
        out = []
        for i in range(len(self.m["counters"]["names"])):
            vals = t.getvalue(t.Key(i))
            out.append(sum(int(v.value if hasattr(v, "value") else v) for v in vals))
        return out

    def _hash_items(self, name: str) -> list[tuple[bytes, bytes]]:
        t = self.bpf[name]
        try:
            items = list(t.items_lookup_batch())
        except Exception:            # batch ops unsupported: walk the keys
            items = list(t.items())
        return [(_bytes(k), _bytes(v)) for k, v in items]

    def _array_values(self, name: str) -> list[bytes]:
        t = self.bpf[name]
        return [_bytes(t[t.Key(i)]) for i in range(len(t))]

    def raw_state(self) -> RawState:
        raw = RawState()
        for m in self.m["maps"]:
            if m["bpf_type"] == "array":
                raw.maps[m["name"]] = self._array_values(m["name"])
            else:
                raw.maps[m["name"]] = self._hash_items(m["name"])
            if m["kind"] == "track":
                raw.maps[m["buckets_map"]] = self._array_values(m["buckets_map"])
            if m["kind"] == "hll":
                raw.maps[m["header_map"]] = self._array_values(m["header_map"])
        raw.counters = self.counters()
        raw.params = self.params()
        raw.ctl_mask, raw.ctl_until = self.ctl()
        return raw

    # ---- events -----------------------------------------------------------------------
    def decode_event(self, data: bytes) -> dict:
        ts, action, rule = struct.unpack_from("<QII", data, 0)
        ev = self.events_by_action[action]
        app, act = self.actions[action]
        out = {"ts": ts, "app": app, "rule": rule, "action": action, "type": ev["type"]}
        if ev["type"] == "packet":
            out["fields"] = decode_fields(ev["record"], data)
        if ev["type"] == "alert":
            out["message"] = act["message"]
        if ev["type"] == "enable":
            out["enabled"] = act["app"]
        return out

    def open_events(self, sink) -> None:
        """Call ``sink(event dict)`` for every record of every app's ring buffer."""
        self._event_sink = sink
        for app in self.m["apps"]:
            if not app["ringbuf"]:
                continue

            def cb(ctx, data, n):
                self._event_sink(self.decode_event(ctypes.string_at(data, n)))
                return 0
            self.bpf[app["ringbuf"]].open_ring_buffer(cb)

    def poll_events(self) -> None:
        if self._event_sink is not None and getattr(self.bpf, "_ringbuf_manager", None):
            self.bpf.ring_buffer_consume()
