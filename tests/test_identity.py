"""Names derived from content (compiler/identity.py).

Maps, slots, rules, events and counters are named after what they are, so the same
statistic keeps its name and schema fingerprint whatever the order of the spec files
and whatever unrelated app is added; positions in arrays follow, published by name.
"""

from __future__ import annotations

import re

from compiler import identity
from compiler.driver import compile_files
from spec_helpers import ROOT, compile_text, cwd

SPECS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.mon"))

EXTRA = """
app extra_unrelated {
  t1 { select udp.port == 123 }
  t2 { ntp = count(), sum(pkt.len) by udp.sport window 5s }   # a key no reference spec uses
  t3 { when ntp.count > 1000 { alert "NTP burst" limit 1/s } }
}
"""


def _names(art) -> dict:
    """identity -> (name, fingerprint) of every map; slot identity -> slot name;
    event name -> (record action id, fingerprint); rule names."""
    m = art.manifest
    return {
        "maps": {x["identity"]: (x["name"], x["fingerprint"]) for x in m["maps"]},
        "slots": {s["identity"]: s["name"] for x in m["maps"] for s in x["slots"]},
        "events": {e["name"]: (e["action"], e["fingerprint"]) for e in m["events"]},
        "counters": set(m["counters"]["names"]),
    }


def _compile(paths, extra_dir=None):
    with cwd(ROOT):
        return compile_files(paths + ([str(extra_dir / "extra.mon")] if extra_dir else []))


def test_names_and_fingerprints_are_stable_across_order_and_unrelated_apps(tmp_path):
    (tmp_path / "extra.mon").write_text(EXTRA)
    base = _names(_compile(SPECS))
    reordered = _names(_compile(list(reversed(SPECS))))
    shuffled = _names(_compile(SPECS[3:] + SPECS[:3]))
    extended = _names(_compile(SPECS[5:] + [str(tmp_path / "extra.mon")] + SPECS[:5]))
    assert len(base["maps"]) == 8 and len(base["slots"]) == 19     # the reference specs, merged
    assert reordered == base and shuffled == base
    # with one unrelated app, everything that was there keeps its name and fingerprint
    for what in ("maps", "slots", "events"):
        assert {k: v for k, v in extended[what].items() if k in base[what]} == base[what], what
        assert set(base[what]) <= set(extended[what])
    assert base["counters"] <= extended["counters"]
    assert len(extended["maps"]) == len(base["maps"]) + 1


def test_names_are_readable_in_the_c(tmp_path):
    art = compile_text(tmp_path, "app a { t1 { select ip } t2 { n = count() by ip.dst } }")
    (m,) = art.manifest["maps"]
    assert re.fullmatch(r"m_[0-9a-f]{6}", m["name"]) and re.fullmatch(r"s_[0-9a-f]{6}", m["slots"][0]["name"])
    assert m["identity"] == "fused key(ip.dst) full count"
    assert f"/* {m['name']}: fused map, key (ip.dst) */" in art.c
    assert f"__u64 {m['slots'][0]['name']};" in art.c


def test_a_schema_change_changes_the_fingerprint_not_the_name(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    one = compile_text(tmp_path / "1", "app a { t2 { n = count() by ip.dst } }").manifest["maps"][0]
    two = compile_text(tmp_path / "2", "app a { t2 { n = count(), sum(pkt.len) by ip.dst } }").manifest["maps"][0]
    assert one["name"] == two["name"] and one["fingerprint"] != two["fingerprint"]
    assert one["slots"][0]["name"] in {s["name"] for s in two["slots"]}     # the count slot is the same


def test_colliding_digests_get_longer_names():
    # two identities whose names would collide at SHORT digits get longer, distinct names
    names = identity.assign("m", ["a", "b", "a"])
    assert len(set(names.values())) == 2 and all(len(n) == 2 + identity.SHORT for n in names.values())
    first = identity.digest("x")[:identity.SHORT]
    collide = next(f"y{i}" for i in range(10**7) if identity.digest(f"y{i}")[:identity.SHORT] == first)
    longer = identity.assign("m", ["x", collide])
    assert len(set(longer.values())) == 2 and all(len(n) > 2 + identity.SHORT for n in longer.values())


def test_event_record_ids_are_unique_and_stable():
    art = _compile(SPECS)
    ids = [e["action"] for e in art.manifest["events"]]
    assert len(set(ids)) == len(ids) and all(0 <= i < 2**31 for i in ids)
    assert {e["name"] for e in art.manifest["events"]} >= {"syn_flood.r0.a0", "flow_watch.r0.a0"}
