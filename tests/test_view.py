"""The replay tables (runtime/ui/view.py): what the rules table says about each action."""

from __future__ import annotations

import io

from rich.console import Console

from engine_helpers import S, EngineMaker, tcp
from runtime.ui.view import render


def _tables(tmp_path, spec: str) -> str:
    """The tables of the spec's snapshot (reference engine, no frames), as plain text."""
    maker = EngineMaker("reference", tmp_path)
    try:
        eng = maker(spec)
        out = io.StringIO()
        render(eng.snapshot(), eng.manifest, console=Console(file=out, width=200, color_system=None))
    finally:
        maker.close()
    return out.getvalue()


def _action_lines(tmp_path, spec: str) -> list[str]:
    return [line.strip(" │").split("│")[0].strip() for line in _tables(tmp_path, spec).splitlines() if "->" in line]


def test_summary_every_reads_as_written(tmp_path):
    """"every" is a limit of one summary per period: shown as the period, not as "limit 1/every"."""
    assert _action_lines(tmp_path, "app s { t3 { when tcp.syn { send summary to asl every 2s } } }") == [
        "-> send summary every 2s"]


def test_a_stricter_limit_than_every_is_shown(tmp_path):
    assert _action_lines(tmp_path, "app s { t3 { when tcp.syn { send summary to asl every 1s limit 1/min } } }") == [
        "-> send summary every 1s limit 1/min"]


def test_other_actions_show_their_limits(tmp_path):
    spec = """app s { t3 { when tcp.syn { send packet(ip.src) to asl limit 5/s
                                       alert "syn" } } }"""
    assert _action_lines(tmp_path, spec) == ["-> send packet(ip.src) limit 5/s; alert 'syn' limit 1/s"]


def test_brackets_are_text_not_styles(tmp_path):
    """A stat read with another key and an alert's message keep their square brackets."""
    spec = """app s { t2 { per = count() by ip.dst }
                t3 { when per[ip.src] > 1 { alert "[SYN] flood" } } }"""
    text = _tables(tmp_path, spec)
    assert "s.per[ip.src].count" in text and "-> alert '[SYN] flood' limit 1/s" in text


def test_windowed_statistics_show_now_and_the_last_window(tmp_path):
    maker = EngineMaker("reference", tmp_path)
    try:
        eng = maker("""app w { t2 { per = count() by ip.dst window 1s
                                     tot = count(), cms(ip.src) as heavy window 100ms } }""")
        for ts, dst in ((5 * S, "198.19.0.1"), (5 * S + 1, "198.19.0.2"), (6 * S, "198.19.0.1")):
            eng.run_frame(ts, tcp(dst=dst))
        out = io.StringIO()
        render(eng.snapshot(), eng.manifest, console=Console(file=out, width=200, color_system=None))
    finally:
        maker.close()
    # the text of each line, without the boxes (U+2500..U+257F) and without blank lines
    rows = [" ".join("".join(" " if "\u2500" <= ch <= "\u257f" else ch for ch in line).split())
            for line in out.getvalue().splitlines()]
    rows = [r for r in rows if r]
    at = rows.index("per, window 1s (2 keys)")
    assert rows[at + 1:at + 4] == ["ip.dst count now count last 1s", "198.19.0.1 1 1", "198.19.0.2 0 1"]
    at = rows.index("tot, window 100ms")
    assert rows[at + 1:at + 4] == ["window count heavy", "now 1 total:1 width:2048 depth:4", "last 100ms 0 not kept"]
