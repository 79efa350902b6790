"""Golden files: the generated C, manifest and IR of small specs, compared exactly.

Each ``tests/golden/NAME.mon`` is compiled alone, from the repository root with
a relative path, and must give exactly ``NAME.c``, ``NAME.manifest.json``,
``NAME.ir.txt`` and ``NAME.asl.txt`` (its ASL stubs). After an intended compiler change, refresh them with

    make golden        (or: .venv/bin/python tools/update_golden.py)

and review the change in ``git diff tests/golden/``.
"""

from __future__ import annotations

import difflib
import importlib.util
import json

import pytest

from spec_helpers import ROOT

GOLDEN = ROOT / "tests" / "golden"
_spec = importlib.util.spec_from_file_location("update_golden", ROOT / "tools" / "update_golden.py")
update_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update_golden)

SPECS = update_golden.specs()
CASES = [(s, suffix) for s in SPECS for suffix in update_golden.SUFFIXES]


@pytest.fixture(scope="module")
def outputs():
    cache = {}

    def get(spec):
        if spec not in cache:
            cache[spec] = update_golden.expected_outputs(spec)
        return cache[spec]
    return get


def test_there_are_golden_specs():
    assert 5 <= len(SPECS) <= 8


@pytest.mark.parametrize("spec, suffix", CASES, ids=[f"{s.stem}{x}" for s, x in CASES])
def test_golden(outputs, spec, suffix):
    path = update_golden.output_path(spec, suffix)
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run 'make golden'"
    expected = path.read_text()
    actual = outputs(spec)[suffix]
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            str(path.relative_to(ROOT)), "generated", n=2))
        lines = diff.splitlines(True)
        shown = "".join(lines[:80]) + (f"... ({len(lines) - 80} more diff lines)\n" if len(lines) > 80 else "")
        pytest.fail(f"generated output differs from {path.relative_to(ROOT)}; if the change is intended, "
                    f"run 'make golden' and review 'git diff tests/golden/'\n{shown}", pytrace=False)


def test_no_orphan_expected_files():
    stems = {s.stem for s in SPECS}
    for path in GOLDEN.iterdir():
        if path.suffix == ".mon":
            continue
        stem, _, suffix = path.name.partition(".")
        assert stem in stems and "." + suffix in update_golden.SUFFIXES, f"orphan golden file {path.name}"


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_expected_files_hold_no_absolute_paths(spec):
    for suffix in update_golden.SUFFIXES:
        text = update_golden.output_path(spec, suffix).read_text()
        assert str(ROOT) not in text
        assert "/tmp/" not in text
    assert f"tests/golden/{spec.name}" in update_golden.output_path(spec, ".c").read_text()


def test_manifests_are_json():
    for spec in SPECS:
        m = json.loads(update_golden.output_path(spec, ".manifest.json").read_text())
        assert m["program"]["function"] == "xdpmon_main"
        assert {a["file"] for a in m["apps"]} == {f"tests/golden/{spec.name}"}


# What the golden specs are there to show; if one is edited so that it no longer
# covers its feature, these say so.
COVERAGE = [
    ("counters", ["count() by ip.src", "where tcp.syn", "window 1s", "max(pkt.len) as biggest"]),
    ("shared", ["share_a", "share_b", "on full lru"]),
    ("sketches", ["distinct(l4.dport) by ip.src", "distinct(ip.src, ip.dst", "hist(", "cms("]),
    ("track", ["track (", "size(pending)", "send summary"]),
    ("t3_on_demand", ["mode on_demand", "param burst", "send packet(", "alert ", "send summary", "enable "]),
    ("filters", ["in {", "..", "/8", "udp.port"]),
]


@pytest.mark.parametrize("name, needles", COVERAGE, ids=[c[0] for c in COVERAGE])
def test_golden_specs_cover_their_features(name, needles):
    text = (GOLDEN / f"{name}.mon").read_text()
    for n in needles:
        assert n in text, f"{name}.mon no longer has {n!r}"


def test_shared_golden_shows_one_slot_for_two_apps():
    ir_txt = (GOLDEN / "shared.ir.txt").read_text()
    assert "# share_a.per_dst.count, share_b.per_dst.count" in ir_txt


def test_on_demand_golden_shows_a_gated_slot_in_the_shared_map():
    # responder's q is watcher's q.count (always kept: read, not gated); its big is its own
    m = json.loads((GOLDEN / "t3_on_demand.manifest.json").read_text())
    m0 = next(x for x in m["maps"] if x["key_fields"] == ["ip.src"])
    assert m0["shared_by"] == ["responder", "watcher"]
    assert sorted(tuple(s["gated_by"]) for s in m0["slots"]) == [(), (), ("responder",)]
    ir_text = (GOLDEN / "t3_on_demand.ir.txt").read_text()
    assert "# watcher.q.count, responder.q.count" in ir_text


def test_update_golden_check_mode_agrees(capsys):
    assert update_golden.main(["--check"]) == 0, capsys.readouterr().out
