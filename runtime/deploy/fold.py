"""Migrating a map whose layout changed: the old program's values folded into the new map.

When a kept statistics map gains or loses slots (another app shares it now, or no
longer), or the counters change, the new program has a new map (compiler/pins.py). The
swap (runtime/deploy/swap.py) puts the new program on the interfaces first, with the
new map as it is (empty, or holding what the new program has counted since), waits
until no CPU runs the old program any more, and only then folds the old map, which
nothing writes now, into the new one. So every frame is counted once: by the old
program into the old map (and folded), or by the new program into the new map.

The fold runs in the kernel, because the new program is writing the new map while it
runs: a small XDP program (``codegen_templates/fold.c.j2``, planned here as a
``FoldPlan``, loaded with the instance's pins so it opens the new maps) is run with
``BPF_PROG_TEST_RUN`` on frames that carry the old entries (each a key and its value, read in
batches by user space, the per-CPU copies combined as a reading combines them:
runtime/abi/percpu.py). For each entry it finds the new map's entry (inserting a zero
one when the key is new) and combines each slot both programs keep with atomic
instructions, the same the program's own updates race with:

- a count, sum or histogram bucket: added (``lock xadd``);
- a max, or a min (kept as ~min): the larger, with compare-and-swap;
- a windowed slot: by its epoch (the window its value is of): the same window adds
  the value and the last window's value; an old value one window behind the new
  adds to the new's last window; older is dropped (it would have been by then);
  a new slot not yet touched takes the old epoch first (compare-and-swap on 0);
- a ``distinct`` sketch (registers): copied when the new slot is still empty; else
  the new one's registers are kept (an estimate, not a count: merging registers while
  the program updates them cannot be done atomically);
- the counters: by name (the old counter's total added to the new index).

What stays approximate is said in ``ctl plan`` and the README: a windowed slot whose
window the new program resets in the very microseconds its entry is folded, and the
sketches above.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from compiler.codegen import env

FRAME_MAX = 3520                 # XDP test-run data: a page less head- and tailroom
RECORDS_MAX = 16                 # entries a frame: unrolled, straight code for the verifier
HEADER = struct.Struct("<II")    # map index, records
ADD_ROLES = {"count", "sum", "hist"}
MAX_ROLES = {"min", "max"}
HLL_ROLES = {"hll_z", "hll_zeros", "hll_est", "hll_regs"}


@dataclass
class Span:
    how: str          # "add" | "max" | "copy"
    new_w: int        # first u64 word in the new value
    old_w: int        # ... in the old value
    words: int


@dataclass
class WindowOp:
    epoch_new: int
    epoch_old: int
    cur: list[Span]
    last: list[Span]
    sketch: bool = False           # a distinct slot: copied when the new one is empty


@dataclass
class FoldMap:
    index: int
    name: str
    pin: str
    bpf_type: str
    key_size: int
    entries: int
    new_size: int
    old_size: int
    flat: list[Span] = field(default_factory=list)
    windows: list[WindowOp] = field(default_factory=list)
    sketches: list[Span] = field(default_factory=list)     # unwindowed distinct: copied when empty

    @property
    def array(self) -> bool:
        return "array" in self.bpf_type

    @property
    def max_records(self) -> int:
        return max(1, min(RECORDS_MAX, (FRAME_MAX - HEADER.size) // (self.key_size + self.old_size)))

    @property
    def key_type(self) -> str:
        return "int" if self.array else f"struct xm_fk_{self.index}"


@dataclass
class FoldPlan:
    maps: list[FoldMap]

    def render(self) -> str:
        return env().get_template("fold.c.j2").render(plan=self, zip=zip)

    def __str__(self) -> str:
        out = []
        for m in self.maps:
            out.append(f"fold {m.index}: {m.name} -> {m.pin} ({m.bpf_type}, key {m.key_size} B, "
                       f"value {m.old_size} -> {m.new_size} B, {m.max_records} records a frame)")
            for s in m.flat:
                out.append(f"  {s.how} words {s.old_w}..{s.old_w + s.words} -> {s.new_w}")
            for w in m.windows:
                out.append(f"  window epoch {w.epoch_old} -> {w.epoch_new}: {len(w.cur)} members"
                           + (" (sketch: copied when empty)" if w.sketch else ""))
            for s in m.sketches:
                out.append(f"  sketch words {s.old_w}..{s.old_w + s.words} -> {s.new_w} (copied when empty)")
        return "\n".join(out)


# ---- planning -------------------------------------------------------------------------------

def _members(value: dict, slot: str) -> dict[str, dict]:
    return {m["name"]: m for m in value["members"] if m.get("slot") == slot}


def _span(how: str, new: dict, old: dict) -> Span:
    assert new["size"] == old["size"] and new["offset"] % 8 == 0 and old["offset"] % 8 == 0, (new, old)
    return Span(how, new["offset"] // 8, old["offset"] // 8, new["size"] // 8)


def _how(role: str) -> str | None:
    base = role[5:] if role.startswith("last_") else role
    return "add" if base in ADD_ROLES else "max" if base in MAX_ROLES else "copy" if base in HLL_ROLES else None


def plan_map(index: int, new_map: dict, old_map: dict, pin: str, key_size: int, entries: int) -> FoldMap:
    """The fold of one statistics map: every member of every slot both layouts keep."""
    nv, ov = new_map["value"], old_map["value"]
    fm = FoldMap(index, new_map["name"], pin, new_map["bpf_type"], key_size, entries, nv["size"], ov["size"])
    old_slots = {s["name"] for s in old_map["slots"]}
    for s in new_map["slots"]:
        if s["name"] not in old_slots:
            continue
        nm, om = _members(nv, s["name"]), _members(ov, s["name"])
        epoch = next((n for n, m in nm.items() if m["role"] == "epoch"), None)
        sketch = s["func"] == "distinct"
        if epoch is None:
            for n, m in nm.items():
                how = _how(m["role"])
                if how is None:
                    continue
                (fm.sketches if how == "copy" else fm.flat).append(_span(how, m, om[n]))
            continue
        cur, last = [], []
        for n, m in nm.items():
            how = _how(m["role"])
            if how is None or m["role"] == "epoch":
                continue
            (last if m["role"].startswith("last_") else cur).append(_span(how, m, om[n]))
        fm.windows.append(WindowOp(nm[epoch]["offset"] // 8, om[epoch]["offset"] // 8, cur, last, sketch))
    return fm


def plan_counters(index: int, pin: str, entries: int) -> FoldMap:
    """The counters: each record is (new index, the old counter's total)."""
    return FoldMap(index, "xm_counters", pin, "percpu_array", 4, entries, 8, 8, flat=[Span("add", 0, 0, 1)])


def plan(changes, old_manifest: dict, new_manifest: dict) -> FoldPlan:
    """The fold of every migrated map of ``changes`` (runtime/deploy/changes.py)."""
    om = {m["name"]: m for m in old_manifest["maps"]}
    nm = {m["name"]: m for m in new_manifest["maps"]}
    out = []
    for mc in changes.by_status("migrated"):
        i = len(out)
        if mc.kind == "counters":
            out.append(plan_counters(i, mc.new_pin, len(new_manifest["counters"]["names"])))
            continue
        new, old = nm[mc.name], om[mc.name]
        key_size = new["key"]["size"] if new.get("key") and not new.get("index") else 4
        out.append(plan_map(i, new, old, mc.new_pin, key_size, new["entries"]))
    return FoldPlan(out)


def precreate(fp: FoldPlan, pin_dir) -> list[str]:
    """Create and pin the new maps of ``fp`` (the maps a migration folds into) before the
    new program and the fold program are loaded, in two processes at once: each then
    opens them by their pins, and neither races the other to create them. The pins made."""
    from pathlib import Path

    from runtime.dataplane import libbpf as L

    made = []
    for fm in fp.maps:
        path = Path(pin_dir) / fm.pin
        if path.exists():
            continue
        fd = L.map_create(fm.bpf_type, fm.name, fm.key_size, fm.new_size, fm.entries)
        try:
            L.obj_pin(fd, str(path))
        finally:
            os.close(fd)
        made.append(fm.pin)
    return made


# ---- running --------------------------------------------------------------------------------

def frames(fm: FoldMap, keys: bytes, values: bytes, n: int):
    """The frames that carry ``n`` old entries (given as keys and values end to end):
    each entry its key and then its value."""
    import numpy as np

    K, V, per = fm.key_size, fm.old_size, fm.max_records
    if n == 0:
        return
    rows = np.hstack([np.frombuffer(keys, np.uint8, n * K).reshape(n, K),
                      np.frombuffer(values, np.uint8, n * V).reshape(n, V)]).tobytes()
    R = K + V
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        frame = HEADER.pack(fm.index, hi - lo) + rows[lo * R:hi * R]
        yield hi - lo, frame + b"\0" * max(0, 14 - len(frame))


def nonzero(keys: bytes, values: bytes, K: int, V: int) -> tuple[bytes, bytes, int]:
    """The entries whose value is not all zero (an array's untouched entries)."""
    zero = bytes(V)
    ks, vs = [], []
    for i in range(len(values) // V):
        v = values[i * V:(i + 1) * V]
        if v != zero:
            ks.append(keys[i * K:(i + 1) * K])
            vs.append(v)
    return b"".join(ks), b"".join(vs), len(vs)


def run(prog_fd: int, fm: FoldMap, keys: bytes, values: bytes, n: int) -> int:
    """Fold ``n`` old entries into the new map; the number folded (RuntimeError when
    the kernel refused some: the new map was full, or a frame was malformed)."""
    from runtime.dataplane.bpf_test_run import TestRunner

    runner = TestRunner(prog_fd, want_data_out=False)
    done = 0
    for count, frame in frames(fm, keys, values, n):
        r = runner.run(frame)
        if r.retval is None:
            raise RuntimeError(f"folding {fm.name}: the test run was refused: {r.refused}")
        if r.retval != count:
            raise RuntimeError(f"folding {fm.name}: {count - r.retval} of {count} entries could not be folded "
                               f"(the new map is full)" if r.retval < count else
                               f"folding {fm.name}: malformed frame ({r.retval})")
        done += count
    return done


def counter_records(old_eng, new_eng) -> tuple[bytes, bytes, int]:
    """(new index, old total) of every counter both programs have, with a total."""
    old_names = old_eng.manifest.raw["counters"]["names"]
    new_index = {n: i for i, n in enumerate(new_eng.manifest.raw["counters"]["names"])}
    ks, vs = [], []
    for name, v in zip(old_names, old_eng.maps.counters()):
        j = new_index.get(name)
        if j is not None and v:
            ks.append(struct.pack("=I", j))
            vs.append(struct.pack("=Q", v))
    return b"".join(ks), b"".join(vs), len(ks)


def fold_all(fp: FoldPlan, prog_fd: int, old_eng, new_eng) -> dict[str, int]:
    """Fold every map of ``fp`` from the old engine's maps (nothing writes them now) into
    the new ones; map -> entries folded."""
    out = {}
    for fm in fp.maps:
        if fm.name == "xm_counters":
            keys, values, n = counter_records(old_eng, new_eng)
        else:
            e = old_eng.maps._entries(fm.name)
            keys, values, n = e.key_bytes, e.value_bytes, len(e)
            if fm.array:
                keys, values, n = nonzero(keys, values, fm.key_size, fm.old_size)
        out[fm.name] = run(prog_fd, fm, keys, values, n)
    return out
