"""Every way a load can fail says why, in one line, with the tail of BCC's log.

Each failure is made for real: C that LLVM's BPF back end refuses by ending the
process (the 512-byte stack), a map larger than this machine's memory (ENOMEM),
and root without its capabilities (EPERM, with ``setpriv``). C that clang
refuses and C the verifier rejects are in tests/test_load_kernel.py, more maps
than the kernel takes (E2BIG, in the verifier's own words) in
tests/test_limits.py::test_the_kernel_refuses_one_map_more. The loader
is called directly where it can be; ``xdpmon compile --load-check`` and
``xdpmon replay`` are run as subprocesses, and their whole stderr is checked.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from runtime.dataplane.loader import LoadError, load as load_program
from spec_helpers import ROOT, compile_text

pytestmark = pytest.mark.kernel

BUG = "this is a bug in xdpmon's compiler: please report it with the specs\n"
PERMISSION = ("loading needs root with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN); "
              "replay --engine reference needs none")
STACK = ("Looks like the BPF stack limit of 512 bytes is exceeded. Please move large on stack variables "
         "into BPF per-cpu array map.")
# 600 bytes of stack, each byte used: LLVM's BPF back end cannot place it
STACK_C = """
int xdpmon_main(struct xdp_md *ctx)
{
    volatile char buf[600];
    buf[0] = 1;
    buf[599] = 2;
    return buf[(ctx->data & 1) * 599] == 2 ? XDP_DROP : XDP_PASS;
}
"""


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))


def env() -> dict:
    e = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))
    e.pop("FORCE_COLOR", None)
    return e


def run(args, cwd=ROOT, prefix=()):
    return subprocess.run([*prefix, sys.executable, *args], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=300)


def xdpmon(*args, cwd=ROOT, prefix=()):
    return run(["-m", "runtime.cli", *args], cwd, prefix)


# ---- the loader: each failure is a LoadError saying why -------------------------------------------

def test_a_map_larger_than_memory_is_not_enough_memory():
    entries = min(2 * mem_total() // 4096 + 1, 2**31)      # twice this machine's memory: refused at once
    src = (f"struct big {{ __u64 v[512]; }};\nBPF_HASH(big, __u32, struct big, {entries});\n"
           "int xdpmon_main(struct xdp_md *ctx) { __u32 k = 0; return big.lookup(&k) ? XDP_DROP : XDP_PASS; }\n")
    with pytest.raises(LoadError) as info:
        load_program(src)
    e = info.value
    assert e.reason == "not enough memory: the kernel could not allocate BPF map big (ENOMEM)"
    assert (e.kind, e.bug, e.map_name) == ("no_memory", False, "big")
    assert e.log.strip() == "could not open bpf map: big, error: Cannot allocate memory"


# ---- LLVM ends the process: the command line outlives it ----------------------------------------

# What ``compile --load-check`` runs once the specs are compiled, on the C given on stdin.
LOAD_CHECK = """
import sys
from runtime.cli import load_failures
from runtime.cli.main import _load_info
load_failures.survive_fatal_exits({}, "load check: FAILED")
info, error = _load_info(sys.stdin.read())
if error is not None:
    load_failures.report(error, {}, "load check: FAILED")
    sys.exit(1)
print("loaded")
"""


def load_check(c_source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LOAD_CHECK], input=c_source, cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)


def test_load_check_of_c_that_does_not_compile():
    p = load_check("int xdpmon_main(struct xdp_md *ctx) { return XDP_PASS }\n")
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == ("load check: FAILED: the generated C did not compile: main.c:1:54: expected ';' after "
                        "return statement\n"
                        "  generated C line 1: int xdpmon_main(struct xdp_md *ctx) { return XDP_PASS }\n"
                        "  log (last lines):\n"
                        "    /virtual/main.c:1:54: error: expected ';' after return statement\n"
                        "    int xdpmon_main(struct xdp_md *ctx) { return XDP_PASS }\n"
                        "                                                         ^\n"
                        "                                                         ;\n"
                        "    1 error generated.\n" + BUG)


def test_load_check_of_c_the_verifier_rejects():
    p = load_check("int xdpmon_main(struct xdp_md *ctx)\n{\n    unsigned char *data = (unsigned char *)(long)ctx->data;\n"
                   "    return data[20] == 6 ? XDP_DROP : XDP_PASS;\n}\n")
    lines = p.stderr.split("\n")
    assert (p.returncode, p.stdout) == (1, "")
    assert lines[0].startswith("load check: FAILED: the kernel's verifier rejected the program (EACCES): invalid "
                               "access to packet, off=20 size=1")
    assert lines[1:3] == ["  generated C line 4: return data[20] == 6 ? XDP_DROP : XDP_PASS;", "  log (last lines):"]
    assert any("invalid access to packet" in ln for ln in lines[3:])
    assert p.stderr.endswith(BUG)


def test_llvm_ending_the_process_is_reported_like_any_load_failure():
    """What ``compile --load-check`` runs after compiling the specs, on C whose stack LLVM's BPF
    back end cannot place: LLVM prints its error and calls exit(1) inside the compile; the
    waiting parent reports it."""
    p = load_check(STACK_C)
    lines = p.stderr.split("\n")
    assert (p.returncode, p.stdout) == (1, "")
    assert lines[0] == f"load check: FAILED: LLVM's BPF back end cannot compile the generated C: {STACK}"
    assert lines[1] == "  log (last lines):"
    assert lines[2].startswith("    error: /virtual/main.c:") and lines[2].endswith(STACK)
    assert "\n".join(lines[3:]) == BUG


def test_llvm_ending_the_process_without_the_guard_is_silent():
    """Why the guard exists: the same compile, unguarded, ends the process with status 1 and
    nothing said (LLVM's message went to the captured stderr)."""
    script = "import sys\nfrom runtime.dataplane.loader import load\nload(sys.stdin.read())\nprint('returned')\n"
    p = subprocess.run([sys.executable, "-c", script], input=STACK_C, cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout, p.stderr) == (1, "", "")


def test_the_guard_passes_the_exit_status_and_signals_through():
    """Past the compile the child is the program: its status (here a death by SIGTERM it
    sends itself) is the command's."""
    script = ("import os, signal, sys\nfrom runtime.cli import load_failures\nfrom runtime.cli.main import _load_info\n"
              "load_failures.survive_fatal_exits({})\ninfo, error = _load_info(sys.stdin.read())\n"
              "print('loaded' if error is None else error.reason, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n")
    p = subprocess.run([sys.executable, "-c", script], input="int xdpmon_main(struct xdp_md *ctx) { return XDP_PASS; }",
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout, p.stderr) == (-15, "loaded\n", "")


# ---- the command line: compile --load-check and replay --------------------------------------------

SKETCH_FIELDS = ["ip.dst", "l4.sport", "l4.dport", "ip.ttl", "ip.proto", "pkt.len", "ipv4.id", "tcp.window",
                 "tcp.seq", "tcp.ackno", "udp.len", "eth.type", "vlan.id", "dns.id"]


def _too_big_spec(tmp_path) -> str:
    """One keyed map with enough 1 KiB sketches per entry (each of other fields, so that none
    is shared) to need twice this machine's memory: the kernel refuses it at once."""
    need = 2 * mem_total() // (16 * 2**20 * 1024) + 1
    args = [", ".join(c) for k in (1, 2) for c in itertools.combinations(SKETCH_FIELDS, k)][:need]
    values = ", ".join(f"distinct({a}, registers=1024) as d{i}" for i, a in enumerate(args))
    (tmp_path / "big.mon").write_text(f"app big {{\n  t2 {{ hosts = {values}\n         by ip.src size 16Mi }}\n}}\n")
    return "big.mon"


def _map_line(tmp_path, spec, replay: bool) -> tuple[str, str]:
    art = compile_text(tmp_path, {spec: (tmp_path / spec).read_text()}, replay=replay)
    m = next(m for m in art.manifest["maps"] if m["kind"] == "fused")
    entry = m["key"]["size"] + m["value"]["size"]
    assert m["size"] * entry > 2 * mem_total()          # never a map this machine could allocate
    return m["name"], (f"  map {m['name']} holds big.hosts (big.mon:2): 16,777,216 entries x {entry:,} bytes "
                       f"(key and value) = {16 * 2**20 * entry / 2**30:,.1f} GiB; a smaller 'size' needs less\n")


@pytest.mark.parametrize("command", ["load-check", "replay"])
def test_cli_not_enough_memory(tmp_path, command):
    spec = _too_big_spec(tmp_path)
    name, detail = _map_line(tmp_path, spec, replay=command == "replay")
    if command == "load-check":
        p, prefix = xdpmon("compile", spec, "--load-check", "--memory-budget", "1Ti", cwd=tmp_path), "load check: FAILED"
    else:
        p, prefix = (xdpmon("replay", spec, "--pcap", "/dev/null", "--memory-budget", "1Ti", cwd=tmp_path),
                     "xdpmon: cannot load the program")
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == (f"{prefix}: not enough memory: the kernel could not allocate BPF map {name} (ENOMEM)\n"
                        f"{detail}"
                        f"  log (last lines):\n    could not open bpf map: {name}, error: Cannot allocate memory\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's capabilities")
@pytest.mark.parametrize("command", ["load-check", "replay"])
def test_cli_not_permitted(command):
    """Root with every capability dropped: the kernel itself says EPERM."""
    drop = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
    if command == "load-check":
        p, prefix = xdpmon("compile", "specs/syn_flood.mon", "--load-check", prefix=drop), "load check: FAILED"
    else:
        p, prefix = (xdpmon("replay", "specs/syn_flood.mon", "--pcap", "/dev/null", prefix=drop),
                     "xdpmon: cannot load the program")
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == (f"{prefix}: the kernel does not permit creating BPF map xm_events (EPERM): "
                        f"{PERMISSION}\n"
                        "  log (last lines):\n    could not open bpf map: xm_events, error: Operation not permitted\n")


def test_cli_report_json_carries_the_reason(tmp_path):
    spec = _too_big_spec(tmp_path)
    name, _ = _map_line(tmp_path, spec, replay=False)
    p = xdpmon("compile", spec, "--report", "--json", "--memory-budget", "1Ti", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["loaded"] == {
        "error": f"not enough memory: the kernel could not allocate BPF map {name} (ENOMEM)",
        "c_line": None, "c_text": None}
