"""The README's language reference stays in sync with the code."""

from __future__ import annotations

import keyword
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import defaults as D
from compiler.names import C_KEYWORDS, C_RESERVED, PY_KEYWORDS, RESERVED_PREFIXES, check_identifier
from compiler.semantic import AGGREGATES
from dsl.fields import FIELDS, LAYERS
from dsl.units import COUNT_MULT, NS_PER

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section() -> str:
    start = README.index("## The .mon language")
    nxt = README.find("\n## ", start + 1)
    return README[start: nxt if nxt >= 0 else len(README)]


def test_section_exists_once():
    assert README.count("## The .mon language") == 1


def test_generated_tables_are_pasted_verbatim():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_field_table.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() in _section(), "README field tables are stale: rerun tools/gen_field_table.py"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_is_documented(name):
    assert f"`{name}`" in _section()


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_is_documented(name):
    assert f"`{name}`" in _section()


def test_every_aggregate_and_unit_is_documented():
    text = _section()
    for agg in AGGREGATES:
        assert re.search(rf"`{agg}\(", text), agg
    assert "track (" in text
    for unit in NS_PER:
        assert f"`{unit}`" in text, unit
    for unit in COUNT_MULT:
        if unit:
            assert f"`{unit}`" in text, unit


def test_defaults_are_the_code_defaults():
    text = _section()
    for value in (D.KEYED_STAT_SIZE, D.TRACK_SIZE, D.DISTINCT_REGISTERS, D.DISTINCT_REGISTERS_KEYED,
                  D.CMS_WIDTH, D.CMS_DEPTH, D.MAX_KEY_FIELDS, D.MAX_KEY_BYTES, D.MAX_SEND_FIELDS):
        assert str(value) in text, value
    assert f"{D.SEND_PACKET_LIMIT[0]}/s" in text and f"{D.ALERT_LIMIT[0]}/s" in text


def test_reserved_names_are_the_code_list():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_reserved_names.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out in _section(), "README reserved names are stale: rerun tools/gen_reserved_names.py"


@pytest.mark.parametrize("name", sorted(C_KEYWORDS | C_RESERVED | PY_KEYWORDS) + [p + "x" for p in RESERVED_PREFIXES])
def test_every_reserved_name_is_refused(name):
    assert check_identifier(name) is not None


def test_reserved_python_keywords_do_not_depend_on_the_python():
    """Written out in compiler/names.py; the running Python's hard keywords are all there."""
    assert set(keyword.kwlist) <= PY_KEYWORDS


def _example(command: str) -> str:
    """The output shown under ``$ COMMAND`` in the section's code block."""
    text = _section()
    start = text.index(f"$ {command}\n") + len(command) + 3
    return text[start: text.index("```", start)]


def _check(args, cwd):
    return subprocess.run([sys.executable, "-m", "runtime.cli", "check", *args], cwd=cwd,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_good_example_is_real():
    r = _check(["specs/syn_flood.mon", "specs/flow_watch.mon"], ROOT)
    assert r.returncode == 0
    assert r.stdout == _example("xdpmon check specs/syn_flood.mon specs/flow_watch.mon")


def test_error_example_is_real(tmp_path):
    (tmp_path / "watch.mon").write_text(
        "app watch {\n  t1 { select tcp.dprot == 443 }\n  t2 { conns = count() by ip.src window 10 }\n}\n")
    r = _check(["watch.mon"], tmp_path)
    assert r.returncode == 2
    assert r.stderr == _example("xdpmon check watch.mon")
