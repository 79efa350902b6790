"""A keyed statistic's N largest keys and the aggregate of the rest, from a map read chunk
by chunk: what the exporter shows of a million-key map, in memory for one chunk and N keys.

``TopKeys(stat, map, now, keys=N, by=MEMBER)`` takes the map's entries a chunk at a
time (``add(entries)``: ``Entries`` of one BPF_MAP_LOOKUP_BATCH call, runtime/dataplane/
batch.py) and keeps, per chunk, the N entries of largest rank among those kept so far and
the chunk's; whatever falls out is folded into the rest's aggregate at once (sums add,
maxima take the largest, minima the smallest, histogram buckets add, distinct estimates
add: an upper bound). So the result is exact whatever the order of the chunks, and memory
does not grow with the number of keys.

An entry ranks by the member ``by`` (default: the statistic's first member), by the value
the exporter shows: a windowed statistic's last completed window, else the running value
(a histogram: its total; a min: the smallest value). Ties go to the smaller key bytes, so
that the same maps give the same series. Entries whose members are all empty (keys of
another statistic fused into the same map, or of older windows) are not the statistic's:
neither listed nor counted.

``result()``: ``{"rows": [{"key": {FIELD: v}, "value": {MEMBER: v}, "last_window": ...}],
"other": {"value": ..., "last_window": ...} or None, "keys": the statistic's keys in all}``,
rows in the order of their keys' bytes, values as snapshot.py gives them.
"""

from __future__ import annotations

import numpy as np

from runtime.abi.columns import (as_value, combine_rest, key_column, merge_stored, nonempty, rank_of, slot_columns,
                                 value_words)
from runtime.abi.entries import Entries
from runtime.abi.records import decode_fields


class TopKeys:
    def __init__(self, stat: dict, map_layout: dict, now: int, keys: int = 100, by: str | None = None):
        slots = {s["name"]: s for s in map_layout["slots"]}
        if any(mb["map"] != map_layout["name"] for mb in stat["members"]):
            raise ValueError(f"statistic {stat['name']}: not all its members are in map {map_layout['name']}")
        self.members = [(mb["name"], slots[mb["slot"]]) for mb in stat["members"]]
        names = [n for n, _ in self.members]
        if by is not None and by not in names:
            raise ValueError(f"statistic {stat['name']} has no member '{by}' (its members: {', '.join(names)})")
        self.by = names.index(by) if by is not None else 0
        self.windowed = self.members[0][1]["window_ns"] is not None
        self.stat, self.map, self.now, self.limit = stat, map_layout, now, keys
        self.counted = 0
        self._keys = None                              # the kept entries: key bytes, rank, columns
        self._rank = None
        self._cols: list[tuple] = []
        self._rest: list[list] = [[None, None] for _ in self.members]      # (current, last) per member

    # ---- a chunk -----------------------------------------------------------------------------
    def _columns(self, entries: Entries):
        words = value_words(entries)
        return [slot_columns(slot, self.map["value"], words, self.now) for _, slot in self.members]

    def add(self, entries: Entries) -> None:
        if not len(entries):
            return
        cols = self._columns(entries)
        keep = np.zeros(len(entries), dtype=bool)
        for cur, last in cols:
            keep |= nonempty(cur)
            if last is not None:
                keep |= nonempty(last)
        if not keep.all():
            cols = [(cur[keep], None if last is None else last[keep]) for cur, last in cols]
        keys = key_column(entries)[keep]
        self.counted += len(keys)
        if not len(keys):
            return
        shown = cols[self.by][1] if self.windowed else cols[self.by][0]
        rank = rank_of(shown, self.members[self.by][1]["func"])
        if self._keys is not None:
            keys = np.concatenate([self._keys, keys])
            rank = np.concatenate([self._rank, rank])
            cols = [(np.concatenate([oc, c]), None if l is None else np.concatenate([ol, l]))
                    for (oc, ol), (c, l) in zip(self._cols, cols)]
        if len(keys) > self.limit:
            # the N-th largest rank (a partition, linear); only the entries at or above it are sorted:
            # the largest rank first, ties to the smaller key bytes
            kth = np.partition(rank, len(rank) - self.limit)[len(rank) - self.limit]
            cand = np.flatnonzero(rank >= kth)
            top = cand[np.lexsort((keys[cand], ~rank[cand]))][:self.limit]
            dropped = np.ones(len(keys), dtype=bool)
            dropped[top] = False
            out = np.flatnonzero(dropped)
            for i, ((cur, last), (_, slot)) in enumerate(zip(cols, self.members)):
                f = slot["func"]
                self._rest[i][0] = merge_stored(self._rest[i][0], combine_rest(cur[out], f), f)
                if last is not None:
                    self._rest[i][1] = merge_stored(self._rest[i][1], combine_rest(last[out], f), f)
            keys, rank = keys[top], rank[top]
            cols = [(cur[top], None if last is None else last[top]) for cur, last in cols]
        self._keys, self._rank, self._cols = keys, rank, cols

    # ---- the answer ----------------------------------------------------------------------------
    def result(self) -> dict:
        rows = []
        if self._keys is not None:
            fields = self.stat["key"]
            for i in np.argsort(self._keys, kind="stable"):
                key = decode_fields(self.map["key"], self._keys[i].tobytes().ljust(self.map["key"]["size"], b"\0"))
                row = {"key": {f: key[f] for f in fields},
                       "value": {n: as_value(cur[i], s["func"]) for (n, s), (cur, _) in zip(self.members, self._cols)}}
                if self.windowed:
                    row["last_window"] = {n: as_value(last[i], s["func"])
                                          for (n, s), (_, last) in zip(self.members, self._cols)}
                rows.append(row)
        other = None
        if self.counted > len(rows):
            other = {"value": {n: as_value(r[0], s["func"]) for (n, s), r in zip(self.members, self._rest)}}
            if self.windowed:
                other["last_window"] = {n: as_value(r[1], s["func"]) for (n, s), r in zip(self.members, self._rest)}
        return {"rows": rows, "other": other, "keys": self.counted}
