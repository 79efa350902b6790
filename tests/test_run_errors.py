"""The errors anyone starting `xdpmon run` will meet, on a veth pair: each is a short
message naming the fix, exit status 2, never a traceback, and nothing left attached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from test_run import ROOT, Running

pytestmark = [pytest.mark.kernel]

SPEC = "specs/syn_flood.mon"


def run(pair, *args, prefix=(), env=None, **kw):
    cmd = ["ip", "netns", "exec", pair.mon_ns, *prefix, sys.executable, "-m", "runtime.cli", "run", SPEC, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **kw)


def no_traceback(p):
    assert "Traceback" not in p.stderr and p.stdout == "", p.stderr


def test_missing_interface(veth_pair):
    p = run(veth_pair, "-i", "nosuch0", "--duration", "2s")
    assert p.returncode == 2
    no_traceback(p)
    assert p.stderr.splitlines()[-1] == ("xdpmon run: interface 'nosuch0' does not exist in this network namespace "
                                         "(interfaces here: lo, mon)")


def test_down_interface(veth_pair):
    subprocess.run(["ip", "-n", veth_pair.mon_ns, "link", "set", "mon", "down"], check=True)
    p = run(veth_pair, "-i", "mon", "--duration", "2s")
    assert p.returncode == 2
    no_traceback(p)
    assert p.stderr.splitlines()[-1] == "xdpmon run: interface 'mon' is down: bring it up first (ip link set mon up)"
    assert veth_pair.xdp() is None


def test_not_permitted(veth_pair):
    """Root with every capability dropped: the kernel says EPERM; the message names what loading needs."""
    p = run(veth_pair, "-i", "mon", "--duration", "2s", prefix=("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"))
    assert p.returncode == 2
    no_traceback(p)
    assert p.stderr.startswith("xdpmon run: cannot load the program: the kernel does not permit creating BPF map "
                               "xm_events (EPERM): loading needs root with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN "
                               "(or CAP_SYS_ADMIN)")


def test_bcc_missing_names_the_setup_command(veth_pair, tmp_path):
    """A Python where `import bcc` fails (as on a machine without python3-bpfcc)."""
    (tmp_path / "bcc").mkdir()
    (tmp_path / "bcc" / "__init__.py").write_text("raise ImportError('No module named bcc')\n")
    p = run(veth_pair, "-i", "mon", "--duration", "2s", env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert p.returncode == 2
    no_traceback(p)
    assert "BCC is not available: No module named bcc; run 'make setup'" in p.stderr, p.stderr


def test_a_program_already_attached_is_named(veth_pair, tmp_path):
    first = Running(veth_pair, [SPEC, "-i", "mon", "--name", "first", "--view", "none", "--duration", "60s"],
                    {"XDPMON_RUN_DIR": str(tmp_path / "run")})
    try:
        p = run(veth_pair, "-i", "mon", "--name", "second", "--duration", "2s",
                env={"XDPMON_RUN_DIR": str(tmp_path / "run")})
        assert p.returncode == 2
        no_traceback(p)
        last = p.stderr.splitlines()[-1]
        assert last == (f"xdpmon run: mon already has an XDP program: id {first.prog_id} (xdpmon_main), native mode, "
                        "attached by a BPF link. xdpmon does not take an interface from another program unless "
                        "told: --replace swaps it atomically, or remove it first ('xdpmon detach -i mon' for a "
                        "leftover)")
        assert veth_pair.xdp()["prog"]["id"] == first.prog_id       # the first instance's program stays
    finally:
        first.signal(signal.SIGTERM)
        first.finish()
    assert veth_pair.xdp() is None
