"""A fused map's slot values for many entries at once, as numpy columns.

``slot_columns(slot, value_struct, words, now)`` is snapshot.py's ``slot_reader``
for a whole chunk of entries: ``words`` is the chunk's values as an (n, size/8)
uint64 array (``value_words(entries)``), and the result is ``(current, last)``,
each a column of the slot's value at ``now`` and in the window before (``last``
None for an unwindowed slot), with the same windows rule (a slot holds the window
of its epoch E and keeps the final value of E - 1).

A column holds, per entry:

- ``count``, ``sum``, ``max``: the value (uint64, shape (n,));
- ``min``: the value *as stored*, ~min with 0 for none (so that the largest
  stored value is the smallest min, and 0 stays "empty"); ``min_value`` decodes;
- ``hist``: the log2 buckets (uint64, shape (n, buckets));
- ``distinct``: the HyperLogLog estimate (hll.estimate_np, bit for bit the kernel's).

An empty value is 0 (no buckets: a row of zeros). The exporter ranks a million
keys with these (runtime/export/topkeys.py) without a Python object per entry.
"""

from __future__ import annotations

import numpy as np

from .entries import Entries
from .hll import estimate_np
from .snapshot import _by_role, epoch_of, hist_dict

M64 = (1 << 64) - 1


def value_words(entries: Entries) -> np.ndarray:
    """The values of ``entries`` as an (n, value_size / 8) uint64 array (a view, no copy)."""
    if entries.value_size % 8:
        raise ValueError(f"a fused map's value is a whole number of u64 words, not {entries.value_size} bytes")
    return np.frombuffer(entries.value_bytes, dtype="<u8").reshape(len(entries), entries.value_size // 8)


def key_column(entries: Entries) -> np.ndarray:
    """The keys as fixed-size byte strings (numpy ``S`` items), which sort as the bytes do."""
    return np.frombuffer(entries.key_bytes, dtype=f"S{entries.key_size}") if entries.key_size else \
        np.zeros(len(entries), dtype="S1")


def _member(words: np.ndarray, slot: dict, members: dict) -> np.ndarray:
    func = slot["func"]
    if func in ("count", "sum", "max", "min"):
        return words[:, members[func]["offset"] // 8]
    if func == "hist":
        m = members["hist"]
        lo = m["offset"] // 8
        return words[:, lo:lo + m["count"]]
    if func == "distinct":
        hll = slot["hll"]
        return estimate_np(words[:, members["hll_z"]["offset"] // 8], words[:, members["hll_zeros"]["offset"] // 8],
                           hll["registers"], hll["am2"], hll["log2m_fp"])
    raise ValueError(f"no column for a '{func}' slot")


def _where(mask: np.ndarray, col: np.ndarray, other) -> np.ndarray:
    if col.ndim == 2:
        mask = mask[:, None]
    return np.where(mask, col, other)


def slot_columns(slot: dict, value_struct: dict, words: np.ndarray, now: int):
    """(current, last) columns of one slot over the entries ``words``; last is None
    when the slot is unwindowed."""
    cur, last, epoch = _by_role(value_struct, slot["name"])
    col = _member(words, slot, cur)
    w = slot["window_ns"]
    if w is None:
        return col, None
    want = np.uint64(epoch_of(now, w))
    stored = words[:, epoch["offset"] // 8]
    here, before = stored == want, stored == want - np.uint64(1)
    return _where(here, col, 0), _where(here, _member(words, slot, last), _where(before, col, 0))


def nonempty(col: np.ndarray) -> np.ndarray:
    """Entries whose value in ``col`` is not empty."""
    return col.any(axis=1) if col.ndim == 2 else col != 0


def rank_of(col: np.ndarray, func: str) -> np.ndarray:
    """What an entry ranks by: the value (a histogram: its total; a min: the min, 0 for none)."""
    if col.ndim == 2:
        return col.sum(axis=1, dtype=np.uint64)
    if func == "min":
        return np.where(col == 0, np.uint64(0), ~col)
    return col


def combine_rest(col: np.ndarray, func: str):
    """The aggregate of a column's entries as stored: sums add (mod 2^64, as the kernel's
    adds wrap), maxima and stored minima take the largest (the smallest min)."""
    if len(col) == 0:
        return None
    if func in ("max", "min"):
        return col.max(axis=0)
    return col.sum(axis=0, dtype=np.uint64)


def merge_stored(a, b, func: str):
    """Two aggregates of ``combine_rest`` (None: none) as one."""
    if a is None:
        return b
    if b is None:
        return a
    return np.maximum(a, b) if func in ("max", "min") else a + b


def as_value(x, func: str):
    """One entry's (or an aggregate's) stored value as the snapshot has it."""
    if x is None:
        return None
    if func == "hist":
        return hist_dict(int(c) for c in x)
    v = int(x)
    if func == "min":
        return None if v == 0 else (~v) & M64
    return v
