"""``check`` notes a trigger whose threshold makes its target unreachable, where that is
decidable (compiler/triggers.py): the trigger counts at least what the target counts, on
the same packets and window, yet fires only above the target's threshold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DETECTOR = """app det {
  mode on_demand
  t1 { select tcp.syn and not tcp.ack }
  t2 { syns = count() by ip.dst window 1s }
  t3 { when syns > param per_dst = 1000 { alert "flood" } }
}
"""


def check(tmp_path, trigger: str):
    (tmp_path / "det.mon").write_text(DETECTOR)
    (tmp_path / "trig.mon").write_text(trigger)
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "check", "--notes", "trig.mon", "det.mon"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return [line for line in r.stderr.splitlines() if "never reported" in line]


def trigger(stat: str, threshold: str, where: str = "where tcp.syn and not tcp.ack", window: str = "1s") -> str:
    return (f"app trig {{\n  t1 {{ select l4 }}\n  t2 {{ s = {stat} {where} window {window} }}\n"
            f"  t3 {{ when s > {threshold} {{ enable det for 60s }} }}\n}}\n")


def test_a_trigger_above_its_target_is_noted(tmp_path):
    assert check(tmp_path, trigger("cms(ip.dst)", "param t = 1500")) == [
        "trig.mon:4:8: note: 'trig' enables 'det' only past 1500 on its statistic 's' (param t = 1500), but 'det' "
        "reports past 1000 on 'syns' (param per_dst = 1000), which counts no more of the same packets: what lies "
        "between is never reported"]


@pytest.mark.parametrize("case, stat, threshold, where, window, noted", [
    ("at the target's threshold", "cms(ip.dst)", "1000", "where tcp.syn and not tcp.ack", "1s", False),
    ("a constant above", "cms(ip.dst)", "1001", "where tcp.syn and not tcp.ack", "1s", True),
    # the target's own statistic: one slot, the same count (as specs/flow_watch.mon)
    ("the same statistic", "count() by ip.dst", "1500", "where tcp.syn and not tcp.ack", "1s", True),
    ("the same statistic, at", "count() by ip.dst", "1000", "where tcp.syn and not tcp.ack", "1s", False),
    # counts more packets (every SYN, ACKs too): still at least the target's count
    ("a wider count", "count() by ip.dst", "2000", "where tcp.syn", "1s", True),
    # one count for all destinations: at least any one destination's
    ("a coarser key", "count()", "5000", "where tcp.syn and not tcp.ack", "1s", True),
    # other packets (port 80 only), another window, another statistic: not decidable, not noted
    ("other packets", "count() by ip.dst", "5000", "where tcp.syn and tcp.dport == 80", "1s", False),
    ("another window", "cms(ip.dst)", "5000", "where tcp.syn and not tcp.ack", "10s", False),
    ("distinct flows", "distinct(ip.src, ip.dst)", "5000", "where tcp.syn and not tcp.ack", "1s", False),
])
def test_only_what_is_decidable_is_noted(tmp_path, case, stat, threshold, where, window, noted):
    assert bool(check(tmp_path, trigger(stat, threshold, where, window))) is noted, case


def test_the_shipped_trigger_is_not_noted(tmp_path):
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "check", "--notes",
                        *sorted(str(p) for p in (ROOT / "specs").glob("*.mon"))],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "never reported" not in r.stderr
