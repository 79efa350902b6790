"""Statistics kept per CPU (compiler/percpu.py) and combined when read
(runtime/abi/percpu.py).

Which maps are per-CPU; ``combine`` against a model written entry by entry; and, on
the kernel, frames run on both CPUs give exactly the snapshot the reference engine
(one shared value) gives for the same frames, windows included.
"""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from compiler import abi
from compiler.driver import compile_files
from engine_helpers import S, EngineMaker, tcp, udp
from runtime.abi import percpu

U64 = (1 << 64) - 1

SPEC = """
app a {
  t1 { select ip }
  t2 {
    flat = count() as n, sum(pkt.len) as bytes, min(pkt.len) as small, max(pkt.len) as big,
           hist(pkt.len) as sizes by ip.proto
    win  = count() as n, sum(pkt.len) as bytes, max(pkt.len) as big, min(pkt.len) as small by ip.dst window 1s
    all  = count() as n, sum(pkt.len) as bytes
    port = count() as n, sum(pkt.len) as bytes, max(pkt.len) as big, min(pkt.len) as small by tcp.dport size 4096 window 1s
  }
}
app r {
  t1 { select tcp }
  t2 { syns = count() by ip.dst where tcp.syn window 1s }
  t3 { when syns > 2 { alert "syns" } }
}
"""


def compiled(tmp_path, spec=SPEC):
    path = tmp_path / "s.mon"
    path.write_text(spec)
    return compile_files([str(path)], replay=True)


def maps_by_stat(art):
    return {f"{u['app']}.{u['stat']}": m for m in art.manifest["maps"] for u in m["uses"]}


def test_which_maps_are_per_cpu(tmp_path):
    by = maps_by_stat(compiled(tmp_path))
    assert {s: m["bpf_type"] for s, m in by.items()} == {
        "a.flat": "percpu_array",          # ip.proto: an array indexed by the key (tests/test_index_maps.py)
        "a.all": "percpu_array",           # unkeyed
        "a.port": "percpu_hash",
        "a.win": "hash",                   # shares its map (key ip.dst) with r.syns, which a rule reads
        "r.syns": "hash",
    }
    # distinct needs its registers combined, so it stays shared; a large map stays shared
    by = maps_by_stat(compiled(tmp_path, "app d { t2 { f = distinct(ip.src) by ip.dst\n"
                                         "              big = count(), sum(pkt.len) by ip.src size 131072 } }"))
    assert by["d.f"]["bpf_type"] == "hash" and by["d.big"]["bpf_type"] == "hash"
    assert 131072 * 16 > abi.PERCPU_COPY_BYTES_MAX >= 65536 * 16     # (traffic_accounting: per CPU)


def test_statistics_rules_read_are_kept_apart_where_the_others_can_be_per_cpu(tmp_path):
    """One key, two maps: what a rule reads (shared, named for it) and the rest (per CPU);
    one map again where the rest could not be per-CPU (a second lookup would buy nothing)."""
    art = compiled(tmp_path, """
app acct { t2 { per_dst = count(), sum(pkt.len) by ip.dst size 65536 } }
app det  { t1 { select tcp } t2 { syns = count() by ip.dst window 1s }
           t3 { when syns > 5 { alert "x" } } }
app wide { t2 { seen = distinct(ip.src) by ip.dst } }
""")
    # the others of the key hold a distinct, which can not be per-CPU: one map for all
    assert [(m["bpf_type"], m["identity"], sorted(f"{u['app']}.{u['stat']}" for u in m["uses"]))
            for m in art.manifest["maps"]] == [
        ("hash", "fused key(ip.dst) full count", ["acct.per_dst", "acct.per_dst", "det.syns", "wide.seen"])]
    art = compiled(tmp_path, """
app acct { t2 { per_dst = count(), sum(pkt.len) by ip.dst size 65536 } }
app det  { t1 { select tcp } t2 { syns = count() by ip.dst window 1s }
           t3 { when syns > 5 { alert "x" } } }
""")
    assert sorted((m["bpf_type"], m["identity"], m["size"]) for m in art.manifest["maps"]) == [
        ("hash", "fused key(ip.dst) full count read by rules", 16384),
        ("percpu_hash", "fused key(ip.dst) full count", 65536),
    ]
    # the same statistic in two apps, one of which reads it in a rule: one slot, kept once,
    # in the map rules read
    art = compiled(tmp_path, """
app acct { t1 { select tcp } t2 { n = count() by ip.dst } }
app det  { t1 { select tcp } t2 { n = count() by ip.dst }  t3 { when n > 5 { alert "x" } } }
""")
    assert [(m["bpf_type"], m["identity"], [sorted(u["app"] for u in s["uses"]) for s in m["slots"]])
            for m in art.manifest["maps"]] == [
        ("hash", "fused key(ip.dst) full count read by rules", [["acct", "det"]])]
    # the distinct can not be per-CPU: it and syns are one map again, of the base name
    art = compiled(tmp_path, """
app det  { t1 { select tcp } t2 { syns = count() by ip.dst window 1s }
           t3 { when syns > 5 { alert "x" } } }
app wide { t2 { seen = distinct(ip.src) by ip.dst } }
""")
    assert [(m["bpf_type"], m["identity"], sorted(u["stat"] for u in m["uses"])) for m in art.manifest["maps"]] == [
        ("hash", "fused key(ip.dst) full count", ["seen", "syns"])]


# ---- combine, against a model --------------------------------------------------------------------

def value_layout(tmp_path):
    art = compiled(tmp_path, "app a { t2 { w = count() as n, sum(pkt.len) as s, max(pkt.len) as mx, "
                             "min(pkt.len) as mn by ip.dst window 1s\n"
                             "             f = count() as n, max(pkt.len) as mx, hist(pkt.len) as h by ip.src } }")
    return [m["value"] for m in art.manifest["maps"] if m["kind"] == "fused"]


def model(value: dict, copies: list[bytes]) -> bytes:
    """The combined value, member by member, the way one shared value would hold it."""
    mem = {m["name"]: m for m in value["members"]}
    words = [list(struct.unpack(f"<{value['size'] // 8}Q", c)) for c in copies]
    out = [0] * (value["size"] // 8)

    def span(m):
        return range(m["offset"] // 8, (m["offset"] + m["size"]) // 8)

    def fold(m, rows):
        for w in span(m):
            col = [r[w] for r in rows]
            out[w] = (sum(col) & U64) if m["role"].removeprefix("last_") in ("count", "sum", "hist") else max(col, default=0)

    epochs = {m["slot"]: m for m in value["members"] if m["role"] == "epoch"}
    for m in value["members"]:
        if m["role"] in ("pad", "epoch"):
            continue
        e = epochs.get(m.get("slot"))
        if e is None:
            fold(m, words)
            continue
        ew = e["offset"] // 8
        latest = max(r[ew] for r in words)
        out[ew] = latest
        if not m["role"].startswith("last_"):
            fold(m, [r for r in words if r[ew] == latest])
        else:
            cur = mem[m["name"].removesuffix("_last")]
            vals = []
            for r in words:
                if r[ew] == latest:
                    vals.append([r[w] for w in span(m)])
                elif latest and r[ew] == latest - 1:
                    vals.append([r[w] for w in span(cur)])
            for i, w in enumerate(span(m)):
                col = [v[i] for v in vals]
                out[w] = (sum(col) & U64) if m["role"] in ("last_count", "last_sum", "last_hist") else max(col, default=0)
    return struct.pack(f"<{len(out)}Q", *out)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_combine_is_the_model(tmp_path_factory, data):
    for value in value_layout(tmp_path_factory.mktemp("v")):
        n = data.draw(st.integers(0, 4))
        ncpu = data.draw(st.integers(1, 4))
        epochs = st.integers(0, 3)
        word = st.one_of(st.integers(0, 5), st.integers(U64 - 2, U64), st.integers(0, U64))
        copies = []
        for _ in range(n * ncpu):
            w = [data.draw(word) for _ in range(value["size"] // 8)]
            for m in value["members"]:
                if m["role"] == "epoch":
                    w[m["offset"] // 8] = data.draw(epochs)
            copies.append(struct.pack(f"<{len(w)}Q", *w))
        got = percpu.combine(b"".join(copies), n, ncpu, value)
        want = b"".join(model(value, copies[i * ncpu:(i + 1) * ncpu]) for i in range(n))
        assert got == want


# ---- on the kernel, frames on both CPUs -----------------------------------------------------------

@pytest.fixture
def two_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    yield cpus[:2]
    os.sched_setaffinity(0, cpus)


@pytest.mark.kernel
def test_frames_on_two_cpus_read_as_one_shared_value(tmp_path, two_cpus):
    kern, ref = EngineMaker("kernel", tmp_path / "k"), EngineMaker("reference", tmp_path / "r")
    (tmp_path / "k").mkdir()
    (tmp_path / "r").mkdir()
    try:
        k, r = kern(SPEC), ref(SPEC)
        frames = []
        t = S
        # window 1 on CPU 0 and CPU 1; window 2 on CPU 1 only; window 3 on CPU 0 only: each
        # CPU's copy is of another window when read
        for w, cpu, n in ((0, 0, 5), (0, 1, 4), (1, 1, 3), (2, 0, 2)):
            for i in range(n):
                t += 1000
                f = (tcp(dst=f"198.19.0.{i % 2 + 1}", dport=80 + i % 2, flags="S", pad=i * 7) if i % 3 else
                     udp(dst="198.19.0.9", pad=i * 5))
                frames.append((cpu, (w + 1) * S + t % S, f))
        for cpu, ts, f in frames:
            os.sched_setaffinity(0, {two_cpus[cpu]})
            k.run_frame(ts, f)
            r.run_frame(ts, f)
        os.sched_setaffinity(0, set(two_cpus))
        snap_k, snap_r = k.snapshot(), r.snapshot()
        assert snap_k["apps"] == snap_r["apps"]
        assert snap_k["counters"] == snap_r["counters"]
        # the kernel kept two copies, both in use: the test exercised the combination
        man = {m["name"]: m for m in k.manifest.raw["maps"]}
        flat = next(n for n, m in man.items() if m["key_fields"] == ["ip.proto"])
        tbl = k.loaded.bpf[flat]
        count = next(m["offset"] for m in man[flat]["value"]["members"] if m["role"] == "count")
        per_cpu = [struct.unpack_from("<Q", bytes(v), count)[0] for v in tbl.getvalue(tbl.Key(6))]
        assert per_cpu[two_cpus[0]] > 0 and per_cpu[two_cpus[1]] > 0
        assert sum(per_cpu) == sum(1 for _, _, f in frames if f[23] == 6)
        flat_tcp = next(e for e in snap_k["apps"]["a"]["stats"]["flat"] if e["key"]["ip.proto"] == 6)
        assert flat_tcp["value"]["n"] == sum(per_cpu)
    finally:
        kern.close()
        ref.close()
