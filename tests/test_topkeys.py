"""What the exporter shows of a keyed statistic (runtime/export/topkeys.py, scrape.py): its N
largest keys and the aggregate of the rest, computed chunk by chunk, equal what the full
snapshot gives, on both engines and in chunks of 64 entries (the kernel's maps read with
BPF_MAP_LOOKUP_BATCH); the vectorised HyperLogLog estimate equals the kernel's bit for bit."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine_helpers import S, udp
from runtime.abi.entries import Entries
from runtime.abi.hll import estimate, estimate_np, log2_fp, _log2_fp_np
from runtime.export.scrape import ExportSettings, StatExport, scrape
from runtime.export.topkeys import TopKeys

SPEC = """app acct {
  t1 { select ip }
  t2 {
    per_dst = count() as packets, sum(pkt.len) as bytes, max(pkt.len) as biggest, min(pkt.len) as smallest by ip.dst size 4096
    sizes = hist(pkt.len) by ip.dst size 4096
    win = count() as n, sum(pkt.len) as b by ip.src window 1s size 4096
    ports = distinct(l4.dport) by ip.src size 4096
  }
}
"""
NOW = S + 1_500_000_000          # in the second window: the first is the last completed one


def frames():
    """(time, frame): 300 destinations and 120 sources with many ties, in two windows."""
    out, t = [], S
    for i in range(300):
        for j in range(i % 7 + 1):
            src = f"198.18.1.{(i * 7 + j) % 120 + 1}"
            out.append((t, udp(src=src, dst=f"198.19.{i // 200}.{i % 200 + 1}", dport=1000 + (i * j) % 37,
                               pad=(i * 3 + j) % 50)))
            t += 1000
    t = S + 1_000_000_000                                   # the second window: some sources again
    for i in range(90):
        out.append((t, udp(src=f"198.18.1.{i % 40 + 1}", dst="198.19.9.9", dport=53, pad=i % 9)))
        t += 1000
    return out


def _rank(row, by, windowed):
    v = (row["last_window"] if windowed else row["value"])[by]
    return sum(v.values()) if isinstance(v, dict) else (v or 0)


def _agg(func, values):
    if func == "hist":
        out = {}
        for v in values:
            for k, n in v.items():
                out[k] = out.get(k, 0) + n
        return out
    if func == "min":
        vs = [v for v in values if v is not None]
        return min(vs) if vs else None
    return max(values) if func == "max" else sum(values)


def expected(full: list, funcs: dict, by: str, n: int, windowed: bool, field: str):
    """The top ``n`` rows and the rest's aggregate, from every row of the snapshot."""
    order = sorted(full, key=lambda r: (-_rank(r, by, windowed), int(ipaddress.ip_address(r["key"][field]))))
    top, rest = order[:n], order[n:]
    top.sort(key=lambda r: int(ipaddress.ip_address(r["key"][field])))
    other = None
    if rest:
        other = {"value": {m: _agg(f, [r["value"][m] for r in rest]) for m, f in funcs.items()}}
        if windowed:
            other["last_window"] = {m: _agg(f, [r["last_window"][m] for r in rest]) for m, f in funcs.items()}
    return {"rows": top, "other": other, "keys": len(full)}


FUNCS = {"per_dst": ({"packets": "count", "bytes": "sum", "biggest": "max", "smallest": "min"}, "ip.dst", False),
         "sizes": ({"hist_pkt_len": "hist"}, "ip.dst", False),
         "win": ({"n": "count", "b": "sum"}, "ip.src", True),
         "ports": ({"distinct": "distinct"}, "ip.src", False)}


@pytest.mark.parametrize("keys", [1, 25, 1000])
def test_top_keys_and_the_rest_equal_the_full_snapshot(engine, monkeypatch, keys):
    import runtime.dataplane.batch as batch

    monkeypatch.setattr(batch, "CHUNK_BYTES", 1)              # 64 entries per BPF_MAP_LOOKUP_BATCH call
    eng = engine(SPEC)
    for t, f in frames():
        eng.run_frame(t, f)
    full = eng.snapshot(now=NOW)["apps"]["acct"]["stats"]
    chunks = list(eng.maps.entry_chunks(eng.manifest.raw["apps"][0]["stats"][0]["map"]))
    assert (len(chunks) >= 5 if engine.kind == "kernel" else len(chunks) == 1) and sum(map(len, chunks)) == 301
    by = {"per_dst": "bytes", "win": "b"}
    cfg = ExportSettings(keys=keys, stats={f"acct.{s}": StatExport(by=b) for s, b in by.items()})
    got = scrape(eng.manifest, eng.maps, NOW, cfg)["apps"]["acct"]["stats"]
    for stat, (funcs, field, windowed) in FUNCS.items():
        want = expected(full[stat], funcs, by.get(stat, next(iter(funcs))), keys, windowed, field)
        assert got[stat] == want, stat
    assert got["per_dst"]["keys"] == 301 and got["win"]["keys"] == 120
    if keys == 1:      # the rest keeps the sums: 300 * 4 + 90 frames
        p = got["per_dst"]
        assert p["rows"][0]["value"]["packets"] + p["other"]["value"]["packets"] == sum(i % 7 + 1 for i in range(300)) + 90


def test_export_off_and_defaults(engine):
    eng = engine(SPEC)
    for t, f in frames()[:50]:
        eng.run_frame(t, f)
    got = scrape(eng.manifest, eng.maps, NOW, ExportSettings(keys=2, stats={"acct.sizes": StatExport(export=False),
                                                                            "acct.win": StatExport(keys=3)}))
    stats = got["apps"]["acct"]["stats"]
    assert set(stats) == {"per_dst", "win", "ports"}
    assert len(stats["per_dst"]["rows"]) == 2 and len(stats["win"]["rows"]) == 3


def test_memory_is_one_chunk_and_n_keys():
    """A million entries in chunks: TopKeys never keeps more than N of them."""
    layout = {"name": "m", "key": {"name": "k", "size": 8, "members": [
                  {"name": "x", "offset": 0, "size": 8, "ctype": "__u64", "role": "field", "field": "x", "kind": "int"}]},
              "value": {"name": "v", "size": 8, "members": [{"name": "count", "offset": 0, "size": 8, "role": "count",
                                                             "slot": "s"}]},
              "slots": [{"name": "s", "func": "count", "window_ns": None}]}
    stat = {"name": "st", "key": ["x"], "members": [{"name": "c", "map": "m", "slot": "s"}]}
    tk = TopKeys(stat, layout, 0, keys=10)
    rng = np.random.default_rng(7)
    total = 0
    for c in range(40):
        ks = np.arange(c * 25_000, (c + 1) * 25_000, dtype="<u8")
        vs = rng.integers(1, 1 << 20, size=25_000, dtype="<u8")
        total += int(vs.sum())
        tk.add(Entries(ks.tobytes(), vs.tobytes(), 8, 8))
        assert len(tk._keys) == 10
    r = tk.result()
    assert r["keys"] == 1_000_000 and len(r["rows"]) == 10
    assert sum(row["value"]["c"] for row in r["rows"]) + r["other"]["value"]["c"] == total


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (1 << 64) - 1), st.integers(0, 4096)), min_size=1, max_size=40),
       st.sampled_from([(64, 2904, 393216), (4096, 3021900, 786432)]))
def test_estimate_np_is_the_kernels_estimate(pairs, hll):
    m, am2, log2m = hll
    pairs = [(z, min(zeros, m)) for z, zeros in pairs]
    z = np.array([p[0] for p in pairs], dtype=np.uint64)
    zeros = np.array([p[1] for p in pairs], dtype=np.uint64)
    assert estimate_np(z, zeros, m, am2, log2m).tolist() == \
        [0 if a == 0 else estimate(a, b, m, am2, log2m) for a, b in pairs]
    xs = [max(1, p[0]) for p in pairs]
    assert _log2_fp_np(np.array(xs, dtype=np.uint64)).tolist() == [log2_fp(x) for x in xs]
