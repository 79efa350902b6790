"""examples/events.schema.json against the code that writes the events
(runtime/abi/event_schema.py) and the README's section on them: the same keys, kinds,
fields and severities; every example line of the README valid; what is not an event
refused."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from event_helpers import SCHEMA_PATH, problems
from runtime.abi.event_schema import ALERT_FIELDS, KEYS, RUNTIME_APP, RUNTIME_KINDS, SEVERITIES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads(SCHEMA_PATH.read_text())


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Events: JSON lines to a file, stdout or syslog")
    return text[start:text.index("\n### ", start + 1)]


def examples() -> list[dict]:
    block = section().split("```\n{", 1)[1].split("```", 1)[0]
    return [json.loads(line) for line in ("{" + block).splitlines() if line.strip()]


def test_the_schema_is_the_codes():
    assert SCHEMA["required"] == list(KEYS) and list(SCHEMA["properties"]) == list(KEYS)
    assert SCHEMA["properties"]["severity"]["enum"] == list(SEVERITIES)
    kinds = SCHEMA["allOf"][0]
    assert kinds["if"]["properties"]["app"]["const"] == RUNTIME_APP
    assert kinds["then"]["properties"]["kind"]["enum"] == list(RUNTIME_KINDS)
    for kind, (fields, _) in RUNTIME_KINDS.items():
        d = SCHEMA["$defs"][kind]
        assert (d["required"], list(d["properties"]), d["additionalProperties"]) == (list(fields), list(fields), False)
    assert SCHEMA["$defs"]["alert"]["required"] == list(ALERT_FIELDS)


def test_the_readme_lists_every_key_and_kind():
    sec = section()
    keys = re.findall(r"^\| `(\w+)` \| (?:string|integer|array|object)", sec, re.M)
    assert keys == list(KEYS)
    table = sec[sec.index("**The runtime's kinds**"):sec.index("An app's **`alert`**")]
    rows = {}
    for kinds, severity, fields in re.findall(r"^\| (`\w+`(?:, `\w+`)*) \| (\w+)[^|]* \| (.*) \|$", table, re.M):
        for k in re.findall(r"`(\w+)`", kinds):
            rows[k] = (severity, [f for f in re.findall(r"`(\w+)`", fields)])
    assert set(rows) == set(RUNTIME_KINDS)
    for kind, (fields, severity) in RUNTIME_KINDS.items():
        assert rows[kind][0] == severity, kind
        documented = [f for f in rows[kind][1] if f in fields]
        assert documented == list(fields), kind          # every field, in the order written


def test_every_readme_example_is_valid_and_every_kind_has_one():
    lines = examples()
    for ev in lines:
        assert problems(ev) == [], ev
    assert {e["kind"] for e in lines if e["app"] == RUNTIME_APP} == set(RUNTIME_KINDS)
    assert any(e["kind"] == "alert" and e["app"] != RUNTIME_APP for e in lines)
    assert all(list(e) == list(KEYS) for e in lines)


@pytest.mark.parametrize("change, why", [
    (lambda e: e.pop("severity"), "'severity' is a required property"),
    (lambda e: e.update(extra=1), "Additional properties are not allowed ('extra' was unexpected)"),
    (lambda e: e.update(severity="alert"), "'alert' is not one of"),
    (lambda e: e.update(time="2026-12-08 02:02:15Z"), "does not match"),
    (lambda e: e.update(kind="started"), "'started' is not one of"),
    (lambda e: e["fields"].pop("cause"), "'cause' is a required property"),
    (lambda e: e["fields"].update(cause="magic"), "'magic' is not one of"),
    (lambda e: e["fields"].update(for_ns="1s"), "'1s' is not of type 'integer', 'null'"),
    (lambda e: e["fields"].update(extra=None), "Additional properties are not allowed"),
])
def test_what_is_not_an_event_is_refused(change, why):
    (ev,) = [e for e in examples() if e["kind"] == "app_enabled" and e["fields"]["cause"] == "trigger"]
    assert problems(ev) == []
    bad = copy.deepcopy(ev)
    change(bad)
    assert any(why in p for p in problems(bad)), problems(bad)


def test_an_apps_events_are_free_but_its_alerts_are_not():
    (alert,) = [e for e in examples() if e["kind"] == "alert"]
    mine = {**alert, "kind": "victim", "fields": {"anything": [1, {"x": None}]}}
    assert problems(mine) == []
    assert problems({**alert, "fields": {"message": "m", "rule": None, "ts_ns": 1, "top": [1, 2]}}) == []
    assert any("'message' is a required property" in p for p in problems({**alert, "fields": {"rule": None, "ts_ns": 1}}))
