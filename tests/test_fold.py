"""Migrating a map whose layout changed (runtime/deploy/fold.py), in the kernel: two
replay builds share their pinned maps (compiler/pins.py) in a private bpffs; what the
old program counted is folded into the new program's map, exactly, slot by slot."""

from __future__ import annotations

import subprocess

import pytest

from runtime.deploy import fold
from runtime.deploy.changes import diff
from spec_helpers import compile_text

pytestmark = [pytest.mark.kernel]

OLD = """app a {
  t1 { select ip }
  t2 {
    per_dst = count() as n, max(pkt.len) as big, min(pkt.len) as small by ip.dst size 64
    per_win = count() as n, sum(pkt.len) as bytes by ip.dst window 10s size 64
  }
}
"""
ADDED = """app b {
  t1 { select ip }
  t2 {
    per_dst = count() as n, sum(pkt.len) as bytes by ip.dst size 64
    per_win = max(pkt.len) as big by ip.dst window 10s size 64
  }
}
"""
SEC = 1_000_000_000


def compiled(tmp_path, texts: dict[str, str]):
    return compile_text(tmp_path, {f"{n}.mon": t for n, t in texts.items()}, replay=True)


@pytest.fixture
def bpffs(tmp_path, kernel):
    d = tmp_path / "bpffs"
    d.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(d)], check=True)
    (d / "i").mkdir()
    yield d / "i"
    subprocess.run(["umount", str(d)], check=True)


def frame(dst: str, size: int) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw
    pkt = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="198.18.0.2", dst=dst) / UDP()
    return bytes(pkt / Raw(b"x" * (size - len(pkt))))


SENT_OLD = [("198.18.1.1", 100, 3), ("198.18.1.1", 300, 2), ("198.18.1.2", 64, 5)]      # dst, size, count
SENT_NEW = [("198.18.1.1", 200, 4), ("198.18.1.3", 80, 1)]


def send(eng, sent, t0: int) -> None:
    t = t0
    for dst, size, n in sent:
        for _ in range(n):
            assert eng.run_frame(t, frame(dst, size)) == 2
            t += 1_000_000


def stats(eng, app: str) -> dict:
    snap = eng.snapshot()
    out = {}
    for name, rows in snap["apps"][app]["stats"].items():
        out[name] = {r["key"]["ip.dst"]: r["value"] for r in rows}
    return out


def test_a_schema_change_keeps_every_kept_slot_exactly(tmp_path, bpffs):
    from runtime.dataplane.loader import load as load_c
    from runtime.engines.kernel import KernelEngine

    old_art = compiled(tmp_path, {"a": OLD})
    new_art = compiled(tmp_path, {"a": OLD, "b": ADDED})
    ch = diff(old_art, new_art)
    migrated = {m.name for m in ch.by_status("migrated")}
    assert migrated == {"xm_counters", old_art.manifest["apps"][0]["stats"][0]["map"]}
    (m,) = [m for m in ch.by_status("migrated") if m.kind == "fused"]
    assert len(m.slots_kept) == 5 and len(m.slots_added) == 2 and m.slots_dropped == []

    old = KernelEngine(old_art, pin_dir=str(bpffs))
    try:
        send(old, SENT_OLD, 5 * SEC)
        before = stats(old, "a")
        assert before["per_dst"] == {"198.18.1.1": {"n": 5, "big": 300, "small": 100},
                                     "198.18.1.2": {"n": 5, "big": 64, "small": 64}}
        new = KernelEngine(new_art, pin_dir=str(bpffs))
        try:
            fp = fold.plan(ch, old_art.manifest, new_art.manifest)
            prog = load_c(fp.render(), pin_dir=str(bpffs), function="xm_fold")
            try:
                # the new program counts a frame before the fold: the fold adds to it
                send(new, [("198.18.1.2", 64, 1)], 6 * SEC)
                done = fold.fold_all(fp, prog.fd, old, new)
            finally:
                prog.close()
            assert done[m.name] == 2 and done["xm_counters"] > 0
            after = stats(new, "a")
            assert after["per_dst"] == {"198.18.1.1": {"n": 5, "big": 300, "small": 100},
                                        "198.18.1.2": {"n": 6, "big": 64, "small": 64}}
            assert after["per_win"]["198.18.1.1"]["n"] == 5
            assert after["per_win"]["198.18.1.1"]["bytes"] == 3 * 100 + 2 * 300
            assert after["per_win"]["198.18.1.2"] == {"n": 6, "bytes": 6 * 64}
            send(new, SENT_NEW, 7 * SEC)
            a, b = stats(new, "a"), stats(new, "b")
            assert a["per_dst"]["198.18.1.1"] == {"n": 9, "big": 300, "small": 100}
            assert a["per_dst"]["198.18.1.3"] == {"n": 1, "big": 80, "small": 80}
            assert a["per_win"]["198.18.1.1"] == {"n": 9, "bytes": 3 * 100 + 2 * 300 + 4 * 200}
            # b's count is a's (one slot); its sum counts from its deployment on
            assert b["per_dst"]["198.18.1.1"] == {"n": 9, "bytes": 4 * 200}
            assert b["per_dst"]["198.18.1.2"] == {"n": 6, "bytes": 64}
            assert b["per_win"]["198.18.1.1"] == {"big": 200}
            c = new.snapshot()["counters"]
            assert c["frames"] == 10 + 1 + 5 and c["parse.ok"] == 16
        finally:
            new.close()
    finally:
        old.close()


def test_the_fold_plan_reads_as_what_it_does(tmp_path):
    old_art = compiled(tmp_path, {"a": OLD})
    new_art = compiled(tmp_path, {"a": OLD, "b": ADDED})
    fp = fold.plan(diff(old_art, new_art), old_art.manifest, new_art.manifest)
    (fm,) = [m for m in fp.maps if m.name != "xm_counters"]
    assert sorted(s.how for s in fm.flat) == ["add", "max", "max"]
    assert [(len(w.cur), len(w.last)) for w in fm.windows] == [(1, 1), (1, 1)]   # n, bytes: an epoch each
    assert fm.old_size < fm.new_size and fm.key_size == 16
    text = str(fp)
    assert "fold 0: xm_counters" in text and "window epoch" in text
    c = fp.render()
    assert c.count("__sync_fetch_and_add") >= 5 and "xm_fold_max" in c


def test_a_program_is_compiled_by_another_process_and_handed_over(bpffs):
    from types import SimpleNamespace

    from runtime.deploy.verify import VerifyFailed, handoff, verify

    bad = SimpleNamespace(c="int xdpmon_main(struct xdp_md *ctx) { return nope; }\n", manifest={})
    with pytest.raises(VerifyFailed) as e:
        handoff(bad, str(bpffs)).result()
    assert "nope" in e.value.reason or "nope" in e.value.log
    good = SimpleNamespace(c="BPF_ARRAY(m, __u64, 4);\nint xdpmon_main(struct xdp_md *ctx) { int k = 1; "
                              "__u64 *v = m.lookup(&k); if (v) *v += 7; return XDP_PASS; }\n", manifest={})
    assert verify(good) > 0                  # loaded and verified: its instructions
    p = handoff(good, str(bpffs))
    assert p.result() > 0
    prog = p.handed                          # the program and its map, by fds, in this process
    try:
        from runtime.dataplane.bpf_test_run import test_run
        assert test_run(prog.fd, bytes(64)).retval == 2
        t = prog.bpf["m"]
        assert int.from_bytes(bytes(t[t.Key(1)]), "little") == 7 and t.max_entries == 4
    finally:
        prog.close()


def test_a_pin_of_another_layout_is_refused_and_stale_pins_are_removed(tmp_path, bpffs, monkeypatch):
    from runtime.dataplane.loader import load as load_c
    from runtime.deploy.pindir import PinDir, PinError
    from runtime.engines.live import LiveEngine

    bpffs = bpffs.parent                     # the mount point (the fixture's "i" is a directory in it)
    monkeypatch.setenv("XDPMON_BPFFS", str(bpffs))
    monkeypatch.setenv("XDPMON_RUN_DIR", str(tmp_path / "run"))
    art = compile_text(tmp_path, {"a.mon": OLD})
    name = art.manifest["maps"][0]["name"]
    pin = art.manifest["pins"][name]
    pd = PinDir.open("t")
    assert pd.path == bpffs / "xdpmon" / "t" and pd.notes == []
    # something else pinned a map of another size where the program's map goes (another value
    # size the verifier refuses itself, where the program inserts)
    m = art.manifest["maps"][0]
    other = load_c(f'struct k {{ __u8 b[{m["key"]["size"]}]; }};\nstruct v {{ __u8 b[{m["value"]["size"]}]; }};\n'
                   f'BPF_TABLE_PINNED("{m["bpf_type"]}", struct k, struct v, {name}, 128, "{pd.path / pin}");\n'
                   f'int xdpmon_main(struct xdp_md *ctx) {{ struct k x = {{}}; {name}.lookup(&x); return XDP_PASS; }}\n')
    other.close()
    with pytest.raises(PinError, match=f"the map pinned at {pd.path / pin} has key, value and entries"):
        LiveEngine(art, pins=pd)
    # an instance that did not stop leaves pins; the next one of that name removes them
    again = PinDir.open("t")
    assert again.notes and "left by an instance named 't'" in again.notes[0] and again.pinned() == set()
    eng = LiveEngine(art, pins=again)
    assert pin in again.pinned() and len(again.pinned()) == len(art.manifest["pins"])
    eng.close()
    again.remove()
    assert not (bpffs / "xdpmon").exists() and (bpffs / "i").exists()     # its own only


def test_the_bpffs_an_instance_mounted_is_unmounted_after_it(tmp_path, kernel, monkeypatch):
    import os

    from runtime.deploy.pindir import PinDir, is_bpffs

    monkeypatch.delenv("XDPMON_BPFFS", raising=False)
    monkeypatch.setenv("XDPMON_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setattr("runtime.deploy.pindir.SYSTEM_BPFFS", str(tmp_path / "no-such"))
    pd = PinDir.open("m")
    try:
        assert pd.mounted and pd.bpffs == tmp_path / "run" / "bpffs" and is_bpffs(str(pd.bpffs))
        assert pd.path.is_dir()
    finally:
        pd.remove()
    assert not is_bpffs(str(tmp_path / "run" / "bpffs")) and not os.path.exists(tmp_path / "run" / "bpffs")


def test_a_distinct_sketch_is_copied_where_the_new_program_has_not_counted(tmp_path, bpffs):
    from scapy.all import IP, UDP, Ether

    from runtime.dataplane.loader import load as load_c
    from runtime.engines.kernel import KernelEngine

    one = "app u {\n  t1 { select ip }\n  t2 { per_dst = distinct(ip.src) as sources by ip.dst size 64 }\n}\n"
    two = "app v {\n  t1 { select ip }\n  t2 { per_dst = count() by ip.dst size 64 }\n}\n"
    old_art, new_art = compiled(tmp_path, {"u": one}), compiled(tmp_path, {"u": one, "v": two})
    ch = diff(old_art, new_art)

    def src_frame(src, dst):
        return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src=src, dst=dst) / UDP())

    old = KernelEngine(old_art, pin_dir=str(bpffs))
    new = None
    try:
        for i in range(40):
            assert old.run_frame(SEC + i, src_frame(f"198.18.3.{i}", "198.18.1.1")) == 2
            assert old.run_frame(SEC + i, src_frame(f"198.18.4.{i % 3}", "198.18.1.2")) == 2
        before = stats(old, "u")["per_dst"]
        new = KernelEngine(new_art, pin_dir=str(bpffs))
        assert new.run_frame(2 * SEC, src_frame("198.18.5.1", "198.18.1.2")) == 2   # counted by the new program
        fp = fold.plan(ch, old_art.manifest, new_art.manifest)
        prog = load_c(fp.render(), pin_dir=str(bpffs), function="xm_fold")
        try:
            fold.fold_all(fp, prog.fd, old, new)
        finally:
            prog.close()
        after = stats(new, "u")["per_dst"]
        assert after["198.18.1.1"] == before["198.18.1.1"]          # copied: the new program had not counted it
        assert after["198.18.1.2"] == {"sources": 1}                 # the new program's own (not merged)
        assert stats(new, "v")["per_dst"] == {"198.18.1.2": {"count": 1}}
    finally:
        if new is not None:
            new.close()
        old.close()
