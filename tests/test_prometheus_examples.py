"""The alert rules (examples/prometheus/) and the Grafana dashboard (examples/grafana/):
checked and unit-tested by promtool, every metric they read one the exporter writes for
the reference apps, the dashboard well-formed Grafana JSON whose every query Prometheus
parses. (tests/test_fleet.py runs both against real Prometheus servers.)"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from prom_helpers import (BUILTIN, DASHBOARD, ROOT, RULE_TESTS, RULES, dashboard, dashboard_exprs, exporter_names,
                          metric_names, panels, rule_exprs, tool)


@pytest.fixture(scope="module")
def exported():
    """The sample names of a program of every spec in specs/ (the exporter's describe())."""
    from compiler.driver import compile_files

    art = compile_files(sorted(str(p) for p in (ROOT / "specs").glob("*.mon")))
    return exporter_names(art.manifest)


def promtool(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_promtool_checks_the_alert_rules():
    p = promtool("check", "rules", str(RULES))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in p.stdout
    assert len(rule_exprs()) == 10


def test_promtool_unit_tests_of_the_rules_pass():
    p = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path):
    """Instance b's threshold lowered to 1000: its 3000 SYN/s fire too, which the tests do
    not expect, so promtool fails and names the alert it did not expect."""
    shutil.copy(RULES, tmp_path / RULES.name)
    text = RULE_TESTS.read_text()
    assert text.count("'5000x45'") == 1
    (tmp_path / RULE_TESTS.name).write_text(text.replace("'5000x45'", "'1000x45'"))
    p = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 1 and "FAILED" in out
    assert 'instance="b:9400"' in out and "time: 12s" in out


def test_names_are_read_from_promql():
    exprs = rule_exprs()
    assert metric_names(exprs["XdpmonSynFlood"]) == {"xdpmon_flow_watch_syns_count", "xdpmon_app_param"}
    assert metric_names(exprs["XdpmonParseErrors"]) == {"xdpmon_parse_total", "xdpmon_frames_total"}
    assert metric_names(exprs["XdpmonDown"]) == {"up"}
    assert metric_names('sum by (ip_dst) (rate(xdpmon_nope_total{a="b"}[1m])) / xdpmon_bare') == \
        {"xdpmon_nope_total", "xdpmon_bare"}


@pytest.mark.parametrize("what", ["rules", "dashboard"])
def test_every_metric_used_is_one_the_exporter_writes(what, exported):
    exprs = rule_exprs() if what == "rules" else dashboard_exprs(dashboard())
    assert exprs
    for where, expr in exprs.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - exported - BUILTIN
        assert not unknown, f"{where}: {sorted(unknown)} are not written by the exporter (in {expr!r})"


def test_the_dashboard_is_grafana_json():
    dash = dashboard()
    assert dash["uid"] == "xdpmon" and dash["title"] == "xdpmon" and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["query"]["query"] == "label_values(xdpmon_build_info, instance)"
    ps = panels(dash)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
    for p in ps:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["refId"] and t["expr"] for t in p["targets"]), p["title"]
    titles = {p["title"] for p in ps}
    assert {"Frames per second", "Verdicts", "Parse outcomes other than ok", "Apps enabled",
            "Top destinations by SYNs per second", "Top destinations by bytes", "Map insert failures",
            "Events lost in the kernel", "ASL handlers: drops and errors"} <= titles


def test_prometheus_parses_every_dashboard_query(tmp_path):
    """Each query as a recording rule: promtool check rules parses them with Prometheus's
    own PromQL parser."""
    exprs = dashboard_exprs(dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e}
                                                        for i, e in enumerate(exprs.values())]}]}
    f = tmp_path / "dashboard-rules.yml"
    f.write_text(yaml.safe_dump(rules))
    p = promtool("check", "rules", str(f))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in p.stdout
    # and a query it cannot parse is refused (the check can fail)
    f.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "d:q", "expr": "sum by (x ("}]}]}))
    assert promtool("check", "rules", str(f)).returncode == 1


def test_the_dashboard_file_is_what_the_readme_names():
    readme = (ROOT / "README.md").read_text()
    for path in (DASHBOARD, RULES, RULE_TESTS):
        assert str(path.relative_to(ROOT)) in readme
