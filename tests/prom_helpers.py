"""What the tests of the Prometheus examples share: the tools (Debian's prometheus package),
the PromQL of the alert rules and of the Grafana dashboard, and the metric names the
exporter writes.

``tool(name)`` is the path of ``promtool`` or ``prometheus``. Missing, the test fails
with the reason when it could have been installed (root, or ``XDPMON_REQUIRE_KERNEL=1``:
tools/setup-prometheus.sh installs it, and ``make test`` runs that), and is skipped
only where it could not (not root).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

import kernelguard

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "examples" / "prometheus" / "xdpmon-alerts.yml"
RULE_TESTS = ROOT / "examples" / "prometheus" / "xdpmon-alerts.test.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "xdpmon.json"
BUILTIN = {"up", "ALERTS"}              # series Prometheus itself makes

_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_XDPMON = re.compile(r"\bxdpmon_[a-zA-Z0-9_]+")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    why = (f"{name} is not installed (Debian's prometheus package): run tools/setup-prometheus.sh as root "
           f"(make test does)")
    if os.geteuid() == 0 or kernelguard.require_kernel():
        pytest.fail(why, pytrace=False)
    pytest.skip(why + "; not root here")


def rule_exprs() -> dict[str, str]:
    """{alert name: expr} of the alert rules."""
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    """Every panel, those inside rows too, rows left out."""
    out = []
    for p in dash["panels"]:
        if p.get("type") == "row":
            out += p.get("panels", [])
        else:
            out.append(p)
    return out


def dashboard_exprs(dash: dict, rate_interval: str = "1m") -> dict[str, str]:
    """{"<panel title>/<refId>": expr} of every query of the dashboard (its annotations'
    too), Grafana's variables replaced by what Grafana would put there."""
    out = {}
    for p in panels(dash):
        for t in p.get("targets", []):
            out[f"{p['title']}/{t['refId']}"] = t["expr"]
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            out[f"annotation {a['name']}"] = a["expr"]
    return {k: e.replace("$__rate_interval", rate_interval).replace("$instance", ".*") for k, e in out.items()}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (every selector ``name{...}`` and every
    bare ``xdpmon_...``); label matchers and functions are not names."""
    return set(_SELECTOR.findall(expr)) | set(_XDPMON.findall(expr))


def exporter_names(manifest: dict) -> set[str]:
    """The sample names the exporter writes for a program (its ``describe()``: every family,
    without reading anything): counters with ``_total``, histograms' ``_bucket`` (only: with no
    ``_sum`` the client writes no ``_count`` either; the ``+Inf`` bucket is the count)."""
    from runtime.export.prometheus import Collector

    out = set()
    for fam in Collector(None, manifest=lambda: manifest).describe():
        if fam.type == "counter":
            out.add(fam.name + "_total")
        elif fam.type == "histogram":
            out.add(fam.name + "_bucket")
        else:
            out.add(fam.name)
    return out
