"""What a change to a running instance would do, decided without the kernel: the pins
(compiler/pins.py), the plan (runtime/deploy/changes.py), the deployment's requests
(runtime/deploy/deployment.py)."""

from __future__ import annotations

import pytest

from compiler.pins import pins
from runtime.deploy.changes import diff
from runtime.deploy.deployment import DeployError, Deployment
from spec_helpers import compile_text

ACCT = "app acct {\n  t1 { select ip }\n  t2 { per_dst = count() as packets by ip.dst size 1024 }\n}\n"
SIZES = ("app sizes {\n  t1 { select ip }\n  t2 { per_dst = count() as packets, sum(pkt.len) as bytes by ip.dst "
         "size 1024 }\n}\n")
PORTS = ("app ports {\n  t1 { select udp }\n  t2 { by_port = count() by udp.dport size 256 }\n"
         "  t3 { when by_port > param limit = 5 { alert \"many\" } }\n}\n")
HALF = ("app half {\n  t1 { select tcp }\n  t2 { pending = track (ip.src, ip.dst) open when tcp.syn close when tcp.ack "
        "expire 10s size SIZE }\n}\n")


def art(tmp_path, **texts):
    return compile_text(tmp_path, {f"{n}.mon": t for n, t in texts.items()})


def status(ch) -> dict[str, str]:
    return {m.name: m.status for m in ch.maps}


def test_pin_names_carry_the_layout_and_the_size(tmp_path):
    a = art(tmp_path, acct=ACCT)
    ab = art(tmp_path, acct=ACCT, sizes=SIZES)
    m = a.manifest["maps"][0]["name"]
    pa, pab = pins(a.plan), pins(ab.plan)
    assert pa[m].startswith(f"{m}-") and pa[m].endswith("-1024")
    assert pa[m] != pab[m]                           # a slot more: another layout, another map
    bigger = art(tmp_path, acct=ACCT.replace("size 1024", "size 2048"))
    assert pins(bigger.plan)[m] != pa[m] and pins(bigger.plan)[m].endswith("-2048")
    assert pa["xm_ifaces"] == pab["xm_ifaces"] and pa["xm_blocklist"] == pab["xm_blocklist"]
    assert pa["xm_counters"] != pab["xm_counters"]   # sizes has counters of its own
    assert 'XM_MAP("percpu_hash", struct xm_k_' in a.c and f'"{pa[m]}");' in a.c
    assert a.manifest["pins"] == pa


def test_an_app_sharing_a_map_migrates_it(tmp_path):
    a, ab = art(tmp_path, acct=ACCT), art(tmp_path, acct=ACCT, sizes=SIZES)
    ch = diff(a, ab)
    m = a.manifest["maps"][0]["name"]
    assert (ch.apps_added, ch.apps_kept, ch.apps_removed, ch.apps_changed) == (["sizes"], ["acct"], [], [])
    st = status(ch)
    assert st[m] == "migrated" and st["xm_counters"] == "migrated"
    assert {n for n, s in st.items() if s == "kept"} == {"xm_blocklist", "xm_blockhash", "xm_blockbits",
                                                        "xm_filter", "xm_ifaces"}
    mc = next(x for x in ch.maps if x.name == m)
    assert len(mc.slots_kept) == 1 and len(mc.slots_added) == 1 and mc.apps == ["acct", "sizes"]
    text = ch.render()
    assert "apps added:     sizes" in text and "maps migrated (kept slots copied): 2" in text
    assert "slots added: " in text and "kernel memory:" in text
    back = diff(ab, a)
    assert back.apps_removed == ["sizes"] and status(back)[m] == "migrated"
    assert next(x for x in back.maps if x.name == m).slots_dropped == mc.slots_added


def test_an_app_of_its_own_creates_and_drops_its_maps(tmp_path):
    a, ap = art(tmp_path, acct=ACCT), art(tmp_path, acct=ACCT, ports=PORTS)
    ch = diff(a, ap)
    acct_map = a.manifest["maps"][0]["name"]
    ports_map = next(m["name"] for m in ap.manifest["maps"] if m["shared_by"] == ["ports"])
    assert status(ch)[acct_map] == "kept" and status(ch)[ports_map] == "created"
    assert ch.params_added == ["ports.limit"] and ch.params_kept == []
    back = diff(ap, a)
    assert status(back)[ports_map] == "dropped" and back.params_dropped == ["ports.limit"]
    assert diff(a, art(tmp_path, acct=ACCT)).nothing
    assert "nothing changes" in diff(a, art(tmp_path, acct=ACCT)).render()


def test_a_track_of_another_size_starts_again(tmp_path):
    small = art(tmp_path, half=HALF.replace("SIZE", "1024"))
    big = art(tmp_path, half=HALF.replace("SIZE", "4096"))
    ch = diff(small, big)
    track = small.manifest["maps"][0]["name"]
    assert status(ch)[track] == "reset" and status(ch)[f"{track}_b"] == "reset"
    assert ch.apps_changed == ["half"]
    assert "reset (another layout: starts empty)" in ch.render()


def test_deployment_requests_are_checked_before_anything_compiles(tmp_path):
    a, p = tmp_path / "acct.mon", tmp_path / "ports.mon"
    a.write_text(ACCT)
    p.write_text(PORTS)
    dep = Deployment.of([str(a)])
    with pytest.raises(DeployError, match="is deployed already"):
        dep.added([str(a)])
    two = dep.added([str(p)])
    assert two.specs == (str(a), str(p))
    files = {"acct": str(a), "ports": str(p)}
    with pytest.raises(DeployError, match="no app 'nope' running"):
        two.without(["nope"], files)
    with pytest.raises(DeployError, match="would remove every app"):
        two.without(["acct", "ports"], files)
    one = two.without(["ports"], files)
    assert one.specs == (str(a),) and one.removed == frozenset()     # the file left with its only app
    assert one.added([str(p)]).specs == two.specs                     # and comes back with it
    assert [x["name"] for x in one.compile().manifest["apps"]] == ["acct"]
    both = tmp_path / "both.mon"
    both.write_text(ACCT.replace("acct", "x") + PORTS.replace("ports", "y"))
    three = dep.added([str(both)])
    part = three.without(["y"], {"acct": str(a), "x": str(both), "y": str(both)})
    assert part.specs == three.specs and part.removed == frozenset({"y"})     # x still runs from both.mon
    assert [x["name"] for x in part.compile().manifest["apps"]] == ["acct", "x"]
    bad = tmp_path / "bad.mon"
    bad.write_text("app bad {\n  t1 { select ip }\n  t2 { n = count() by ip.nosuch }\n}\n")
    with pytest.raises(DeployError) as e:
        dep.added([str(bad)]).compile()
    text = str(e.value)
    assert text.startswith("the specs have errors; nothing changed\n") and f"{bad}:3:" in text and "^" in text


def test_a_removed_app_that_another_enables_is_refused(tmp_path):
    from pathlib import Path
    specs = Path(__file__).resolve().parent.parent / "specs"
    dep = Deployment.of([str(specs / "syn_flood.mon"), str(specs / "flow_watch.mon")])
    with pytest.raises(DeployError, match="syn_flood"):
        dep.without(["syn_flood"], {"syn_flood": dep.specs[0], "flow_watch": dep.specs[1]}).compile()


def test_a_migrated_sketch_is_said_to_be_approximate(tmp_path):
    one = ("app u {\n  t1 { select ip }\n  t2 { per_dst = distinct(ip.src) as sources by ip.dst size 64 }\n}\n")
    two = ("app v {\n  t1 { select ip }\n  t2 { per_dst = count() by ip.dst size 64 }\n}\n")
    a, ab = art(tmp_path, u=one), art(tmp_path, u=one, v=two)
    ch = diff(a, ab)
    (mc,) = [m for m in ch.by_status("migrated") if m.kind == "fused"]
    assert len(mc.approximate) == 1 and mc.approximate == mc.slots_kept
    assert "approximate: " in ch.render() and "distinct sketches" in ch.render()
    assert diff(art(tmp_path, acct=ACCT), art(tmp_path, acct=ACCT, sizes=SIZES)).render().count("approximate") == 0
