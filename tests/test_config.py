"""The deployment config (runtime/control/config.py): every mistake with its
line and column, the command line over the file, the examples, the systemd
unit, and a reload on SIGHUP while running."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsl.errors import SpecError, render_plain
from runtime.control.config import check_against, live_changes, load_config, merge

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def cfg_file(tmp_path, text: str) -> str:
    p = tmp_path / "deploy.yaml"
    p.write_text(text)
    return str(p)


def errors(path: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_config(path)
    return [d.headline().replace(path, "F") + (f" [{d.hint}]" if d.hint else "") for d in e.value.diagnostics]


GOOD = f"""name: t
specs: [{SPECS}/syn_flood.mon, {SPECS}/flow_watch.mon]
interfaces: [mon]
interval: 500ms
params:
  syn_flood: {{per_dst: 2k}}
allow: [198.18.0.0/24]
blocklist: {{max_entries: 100, default_ttl: 1m, max_ttl: 1h}}
enforce: true
outputs: {{events: ev.jsonl, json: true, view: none}}
"""


def test_a_good_config(tmp_path):
    c = load_config(cfg_file(tmp_path, GOOD))
    assert (c.name, c.interfaces, c.interval_ns, c.params, c.allow) == \
        ("t", ["mon"], 500_000_000, {"syn_flood": {"per_dst": 2000}}, ["198.18.0.0/24"])
    assert (c.block_max, c.block_ttl, c.block_max_ttl, c.enforce) == (100, 60 * 10**9, 3600 * 10**9, True)
    assert (c.events_path, c.json, c.view) == (str(tmp_path / "ev.jsonl"), True, "none")
    assert c.specs == [str(SPECS / "syn_flood.mon"), str(SPECS / "flow_watch.mon")]


@pytest.mark.parametrize("text, expected", [
    ("specs: [a.mon]\ninterfacs: [eth0]\n",
     ["F:1:9: error: spec file 'a.mon' not found ({dir}/a.mon)",
      "F:2:1: error: unknown key 'interfacs' in the config [did you mean 'interfaces'?]"]),
    ("interval: 10\n", ["F:1:11: error: interval needs a unit: write e.g. 10s"]),
    ("interval: 10q\n", ["F:1:11: error: unknown time unit 'q' in interval (use one of ns, us, ms, s, m (or min), h, d)"]),
    ("xdp_mode: fast\n", ["F:1:11: error: xdp_mode 'fast' is not one of auto, native, generic"]),
    ("allow: [198.18.0.1/24]\n", ["F:1:9: error: allow: '198.18.0.1/24' is not a prefix (198.18.0.1/24 has host bits set)"]),
    ("enforce: maybe\n", ["F:1:10: error: enforce must be true or false, not 'maybe'"]),
    ("interfaces: {a: 1}\n", ["F:1:13: error: interfaces must be a list"]),
    ("blocklist: {max_entrie: 5}\n", ["F:1:13: error: unknown key 'max_entrie' in blocklist [did you mean 'max_entries'?]"]),
    ("params:\n  a: {x: 3q}\n", ["F:2:10: error: unknown unit 'q' in a.x (a count takes k, M, G (powers of 1000) or Ki, "
                                "Mi, Gi (powers of 1024); a duration ns, us, ms, s, m (or min), h, d)"]),
    ("metrics: 9400\n", ["F:1:10: error: metrics '9400' is not ADDRESS:PORT (e.g. 127.0.0.1:9400)"]),
    ("metrics: {keys: 5}\n", ["F:1:10: error: metrics: give listen: ADDRESS:PORT (e.g. 127.0.0.1:9400)"]),
    ("metrics:\n  listen: 127.0.0.1:9400\n  keys: 0\n  stats:\n    per_dst: {keys: 3}\n    a.b: {kees: 3, export: maybe}\n",
     ["F:3:9: error: metrics.keys must be at least 1",
      "F:5:5: error: metrics.stats.per_dst: name a statistic as APP.STAT (e.g. traffic_accounting.per_dst)",
      "F:6:11: error: unknown key 'kees' in metrics.stats.a.b [did you mean 'keys'?]",
      "F:6:28: error: metrics.stats.a.b.export must be true or false, not 'maybe'"]),
    ("metrics:\n  listen: 127.0.0.1:9400\n  tls: {cert: nope.crt}\n",
     ["F:3:8: error: metrics.tls: give cert and key (PEM files)",
      "F:3:15: error: metrics.tls.cert: file 'nope.crt' not found ({dir}/nope.crt)"]),
    ("name: [a]\n  b: c\n", ["F:2:3: error: not valid YAML: expected <block end>, but found '<block mapping start>'"]),
    ("", ["F:1:1: error: the config is empty [give at least specs and interfaces]"]),
])
def test_every_mistake_has_its_line_and_column(tmp_path, text, expected):
    assert errors(cfg_file(tmp_path, text)) == [e.format(dir=tmp_path) for e in expected]


def test_rendered_with_the_line_and_a_caret(tmp_path):
    path = cfg_file(tmp_path, "interval: 1s\nxdp_mode: fast\n")
    with pytest.raises(SpecError) as e:
        load_config(path)
    assert render_plain(e.value.diagnostics[0], e.value.sources).splitlines() == \
        [f"{path}:2:11: error: xdp_mode 'fast' is not one of auto, native, generic", "  xdp_mode: fast",
         "            ^^^^"]


def test_apps_and_params_checked_against_the_program(tmp_path):
    from compiler.driver import compile_files
    path = cfg_file(tmp_path, GOOD + "asl:\n  nosuch: {queue: 5}\n")
    text = open(path).read().replace("syn_flood: {per_dst: 2k}", "syn_flood: {per_dst: 2k, nope: 1}\n  zz: {a: 1}")
    open(path, "w").write(text)
    c = load_config(path)
    art = compile_files(c.specs)
    got = [d.headline().replace(path, "F") for d in check_against(c, art.manifest)]
    assert got == ["F:6:28: error: app 'syn_flood' has no param 'nope'",
                   "F:7:3: error: params: no app 'zz' in the specs",
                   "F:13:3: error: asl: no app 'nosuch' in the specs"]


def test_metrics_export_settings_checked_against_the_program(tmp_path):
    from compiler.driver import compile_files
    from runtime.export.scrape import ExportSettings, StatExport

    path = cfg_file(tmp_path, GOOD + "metrics:\n  listen: 127.0.0.1:9400\n  keys: 20\n  stats:\n"
                    "    syn_flood.syns: {keys: 5, by: count}\n    flow_watch.flows: {export: false}\n"
                    "    syn_flood.nosuch: {keys: 1}\n    syn_flood.syns_: {by: x}\n")
    c = load_config(path)
    assert c.metrics == "127.0.0.1:9400"
    settings = ExportSettings.of_config(c.metrics_export)
    assert settings == ExportSettings(20, {"syn_flood.syns": StatExport(5, "count"),
                                           "flow_watch.flows": StatExport(export=False),
                                           "syn_flood.nosuch": StatExport(1), "syn_flood.syns_": StatExport(by="x")})
    assert settings.of("syn_flood", "syns") == StatExport(5, "count")
    assert settings.of("flow_watch", "syns") == StatExport(20)
    got = [d.headline().replace(path, "F") for d in check_against(c, compile_files(c.specs).manifest)]
    assert got[0] == "F:17:5: error: metrics.stats: no statistic 'syn_flood.nosuch' in the specs"
    assert got[1:] == ["F:18:5: error: metrics.stats: no statistic 'syn_flood.syns_' in the specs"]
    bad = load_config(cfg_file(tmp_path, open(path).read().replace("by: count", "by: bytes")))
    assert [d.headline().replace(path, "F") for d in check_against(bad, compile_files(c.specs).manifest)][0] == \
        "F:15:5: error: metrics.stats: 'syn_flood.syns' has no member 'bytes'"
    # what the exporter exports changes on a reload; where it listens needs a restart
    again = load_config(cfg_file(tmp_path, open(path).read().replace("keys: 20", "keys: 30")))
    assert live_changes(c, again) == (["metrics_export"], [])


def test_the_command_line_wins(tmp_path):
    c = load_config(cfg_file(tmp_path, GOOD))
    o = merge(c, {"interfaces": ["eth9"], "interval_ns": 2 * 10**9, "enforce": None, "allow": ["10.0.0.0/8"],
                  "name": None, "specs": []})
    assert (o.interfaces, o.interval_ns, o.enforce, o.name) == (["eth9"], 2 * 10**9, True, "t")
    assert o.allow == ["198.18.0.0/24", "10.0.0.0/8"] and len(o.specs) == 2


def test_what_a_reload_may_change(tmp_path):
    a = load_config(cfg_file(tmp_path, GOOD))
    b = load_config(cfg_file(tmp_path, GOOD.replace("2k", "3k").replace("[mon]", "[mon, eth1]")
                             .replace("enforce: true", "enforce: false")))
    assert live_changes(a, b) == (["params", "enforce"], ["interfaces"])


@pytest.mark.parametrize("name", ["edge-ddos", "dns-server", "accounting"])
def test_the_examples_load_and_compile(name):
    from compiler.driver import compile_files
    c = load_config(str(ROOT / "examples" / "deploy" / f"{name}.yaml"))
    art = compile_files(c.specs)
    assert check_against(c, art.manifest) == []
    assert c.interfaces


def test_the_systemd_unit_verifies(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (ROOT / "examples" / "deploy" / "xdpmon.service").read_text()
    unit = unit.replace("/opt/xdpmon/.venv/bin/xdpmon", str(ROOT / ".venv" / "bin" / "xdpmon"))
    path = tmp_path / "xdpmon@.service"
    path.write_text(unit)
    inst = tmp_path / "xdpmon@edge.service"
    inst.symlink_to(path)
    r = subprocess.run(["systemd-analyze", "verify", str(inst)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "Restart=on-failure" in unit


@pytest.mark.kernel
def test_reload_on_sighup_while_running(veth_pair, tmp_path):
    from test_run import Running
    path = cfg_file(tmp_path, GOOD.replace("json: true", "json: false").replace("enforce: true", "enforce: false"))
    env = {"XDPMON_RUN_DIR": str(tmp_path / "run")}
    r = Running(veth_pair, ["--config", path, "--duration", "60s"], env)
    try:
        def params():
            out = subprocess.run([sys.executable, "-m", "runtime.cli", "ctl", "--name", "t", "stats", "syn_flood"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=30,
                                 env={**__import__("os").environ, **env, "PYTHONPATH": str(ROOT)})
            return json.loads(out.stdout)["params"]
        assert params() == {"per_dst": 2000}
        text = open(path).read()
        open(path, "w").write(text.replace("2k", "3k").replace("[mon]", "[mon, eth7]"))
        r.signal(signal.SIGHUP)
        for _ in range(50):
            if params() == {"per_dst": 3000}:
                break
            time.sleep(0.1)
        assert params() == {"per_dst": 3000}, r.p.poll()
        assert r.p.poll() is None                      # a reload, not a hangup
    finally:
        r.signal(signal.SIGTERM)
        code, _, err = r.finish()
    assert code == 0, err
    assert f"xdpmon: reloaded {path}: applied params; needs a restart to change: interfaces" in err
