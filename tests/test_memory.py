"""Memory budgets: what a program's maps cost in kernel memory, the budget that
refuses a program before it is loaded, ENOMEM reported as memory, and snapshots
that read maps in bounded chunks (README: "Memory budgets").

The estimate (compiler/memory.py) is checked against what the kernel charges:
the ``memlock`` of /proc/self/fdinfo/<map fd>, the kernel's own accounting of
each map (map_mem_usage). It must stay within ``memory.tolerance`` (1 % or
1 KiB); on Linux 6.18 it is exact.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from compiler import memory
from compiler.driver import plan_program
from compiler.frontend import load
from dsl.errors import SpecError
from runtime.dataplane import batch
from runtime.dataplane.loader import LoadError, load as load_program
from spec_helpers import ROOT, compile_text, cwd, write_specs

SPECS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.mon"))
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "XDPMON_WERROR": "1"}
MAP_TYPES = {1: "hash", 2: "array", 5: "percpu_hash", 6: "percpu_array", 9: "lru_hash",
             10: "lru_percpu_hash", 11: "lpm_trie", 27: "ringbuf"}


def plan_of(tmp_path, text: str):
    names = write_specs(tmp_path, text)
    with cwd(tmp_path):
        model, sources = load(names)
        return plan_program(model, sources)


def xdpmon(args, cwd_path, timeout=300):
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=cwd_path, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def fdinfo(fd: int) -> dict[str, str]:
    text = open(f"/proc/self/fdinfo/{fd}").read()
    return dict(line.split(":\t", 1) for line in text.strip().split("\n") if ":\t" in line)


def map_fds() -> set[int]:
    out = set()
    for name in os.listdir("/proc/self/fdinfo"):
        try:
            if "map_type:" in open(f"/proc/self/fdinfo/{name}").read():
                out.add(int(name))
        except OSError:
            pass
    return out


# ---- the kernel's accounting, exact (Linux 6.18 struct sizes) ------------------------------------

# (type, max_entries, key size, value size, possible CPUs, bytes). The 2-CPU figures are
# what this kernel's fdinfo says (test_accounting_is_the_kernels checks them live).
ACCOUNTING = [
    ("hash", 1000, 16, 24, 2, 105_536),       # 960 + 1024 buckets x 16 + 1002 elems x 88 + 2 spare pointers
    ("hash", 1024, 16, 24, 2, 107_648),
    ("hash", 3000, 4, 20, 2, 306_672),        # key 4 -> 8, value 20 -> 24: elems of 80
    ("hash", 1, 4, 8, 2, 1_184),
    ("hash", 1000, 16, 24, 4, 105_728),       # two more spare elements and pointers
    ("lru_hash", 1000, 16, 24, 2, 105_344),   # no spare elements
    ("lru_hash", 1, 4, 8, 2, 1_040),
    ("percpu_hash", 1000, 16, 24, 2, 137_344),  # elems of 72 (a pointer) + 24 B per CPU per entry
    ("percpu_hash", 1000, 16, 24, 4, 185_344),
    ("lru_percpu_hash", 1000, 16, 24, 2, 137_344),
    ("array", 1000, 4, 24, 2, 24_312),        # 312 + 1000 x 24
    ("array", 1, 4, 20, 2, 336),
    ("array", 65536, 4, 8, 2, 524_600),
    ("percpu_array", 100, 4, 24, 2, 5_912),   # 312 + 100 x (8 + 2 x 24)
    ("percpu_array", 100, 4, 24, 4, 10_712),
    ("ringbuf", 262_144, 0, 0, 2, 275_784),   # 304 + 67 pages + 131 page pointers
    ("ringbuf", 4096, 0, 0, 2, 16_728),
]


@pytest.mark.parametrize("typ,entries,key,value,cpus,expected", ACCOUNTING)
def test_map_bytes(typ, entries, key, value, cpus, expected):
    assert memory.map_bytes(typ, entries, key, value, cpus) == expected


def test_the_issues_map():
    """distinct(ip.src, registers=1024) by ip.dst size 16Mi: 17.5 GiB, all of it at load."""
    # 16 Mi + 2 elements of 48 + 16 + 1040, 16 Mi buckets of 16, the table, 2 spare pointers
    assert memory.map_bytes("hash", 1 << 24, 16, 1040, 2) == 18_790_485_104


def test_estimate_of_a_program(tmp_path):
    plan = plan_of(tmp_path, "app a {\n  t2 { c = count() by ip.dst size 200000 }\n}\n")
    est = memory.estimate(plan, cpus=2)
    assert [(m.name, m.bpf_type, m.entries, m.key_size, m.value_size, m.bytes, m.stats) for m in est.maps] == [
        ("xm_counters", "percpu_array", 28, 4, 8, 984, ()),
        ("xm_params", "array", 1, 4, 8, 320, ()),
        ("xm_ctl", "array", 1, 4, 24, 336, ()),
        ("xm_zero", "array", 1, 4, 8, 320, ()),
        ("xm_scratch", "percpu_array", 1, 4, 48, 416, ()),      # with the full map's retry time
        ("xm_rl", "array", 1, 4, 8, 320, ()),
        # the filters: the blocklist full (10,000 x (a 24-byte node, 16 address bytes, a 24-byte value)),
        # its state, the interface counters (64 preallocated elements of 48 + 8 + 8, 16 B per CPU)
        ("xm_blocklist", "lpm_trie", 10_000, 20, 24, 640_000, ()),
        # the hash map beside it, not preallocated: 16,384 buckets, 10,000 x (48 + 24 + 24 + an 8-byte free-list node)
        ("xm_blockbits", "array", 1024, 4, 8, 312 + 1024 * 8, ()),
        ("xm_blockhash", "hash", 10_000, 20, 24, 960 + 16 * 16_384 + 104 * 10_000, ()),
        ("xm_filter", "array", 1, 4, 192, 312 + 192, ()),
        ("xm_ifaces", "percpu_hash", 64, 4, 16, 960 + 16 * 64 + 64 * 64 + 2 * 16 * 64, ()),
        ("m_39a6d1", "hash", 200_000, 16, 8, 18_595_424, ("a.c",)),
    ]
    assert est.total == 18_595_424 + 651_136 + 1_303_104 + 8_696
    assert est.to_json(memory.Budget(1 << 30, "x"))["total_bytes"] == 18_595_424 + 651_136 + 1_303_104 + 8_696
    assert memory.estimate(plan, cpus=4).total == 18_595_424 + 651_136 + 1_303_104 + 8_696 + 28 * 8 * 2 + 48 * 2 + 2 * (72 + 8) + 2 * 16 * 64


def test_budget_refusal_names_the_biggest_statistic(tmp_path):
    plan = plan_of(tmp_path, "app a {\n  t2 { d = count() by ip.src size 1000\n"
                             "       c = count() by ip.dst size 200000 }\n}\n")
    est = memory.estimate(plan, cpus=2)
    assert memory.check(est, memory.Budget(est.total, "x")) == []
    (d,) = memory.check(est, memory.Budget(est.total - 1, "set by --memory-budget"))
    assert d.headline() == (
        "a.mon:3:12: error: statistic a.c needs 17.7 MiB of kernel memory (hash map m_39a6d1: 200,000 entries, "
        "key 16 B, value 8 B); the program's maps need 19.7 MiB, above the memory budget of 19.7 MiB "
        "(set by --memory-budget)")
    assert d.hint == ("declare fewer entries with 'size' (a hash map is allocated whole when the program loads), "
                      "or raise the budget with --memory-budget")


def test_budget_refusal_of_a_shared_map_and_a_sketch(tmp_path):
    plan = plan_of(tmp_path, "app a { t2 { c = count() by ip.dst } }\napp b { t2 { s = sum(pkt.len) by ip.dst } }\n")
    (d,) = memory.check(memory.estimate(plan, cpus=2), memory.Budget(1000, "set by --memory-budget"))
    # a value per CPU (16,384 x 16 B a copy): 16,384 buckets, 16,384 x (48 + 16 + 8 + 2 x 16)
    assert d.headline().startswith("a.mon:1:18: error: statistics a.c, b.s share a map that needs 1.9 MiB of "
                                   "kernel memory (percpu_hash map")
    assert memory.map_bytes("percpu_hash", 16_384, 16, 16, 2) == 960 + 16 * 16_384 + 16_384 * (48 + 16 + 8 + 2 * 16)
    plan = plan_of(tmp_path, "app a { t2 { n = distinct(ip.src, registers=65536) } }\n")
    (d,) = memory.check(memory.estimate(plan, cpus=2), memory.Budget(1000, "set by --memory-budget"))
    # the registers and the sketch's header: 312 + 65536 x 8 + 312 + 32
    assert d.headline().startswith("a.mon:1:18: error: statistic a.n needs 512.7 KiB of kernel memory "
                                   "(array map m_")
    assert d.hint.startswith("declare fewer registers")


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (9_300_936, "8.9 MiB"),
                                    (18_790_485_104, "17.5 GiB"), (1 << 40, "1.0 TiB")])
def test_fmt_bytes(n, text):
    assert memory.fmt_bytes(n) == text


def test_default_budget_is_a_quarter_of_physical_memory():
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    b = memory.Budget.of(None)
    assert b.bytes == phys // 4
    assert b.why == f"a quarter of this machine's {memory.fmt_bytes(phys)}"
    assert memory.Budget.of(12345) == memory.Budget(12345, "set by --memory-budget")


@pytest.mark.parametrize("text,n", [("1000000", 1_000_000), ("4Gi", 4 << 30), ("512MiB", 512 << 20),
                                    ("6G", 6_000_000_000), ("1.5Gi", 3 << 29), ("2 Ti", 2 << 40), ("100B", 100),
                                    ("64k", 64_000), ("8KiB", 8192)])
def test_parse_size(text, n):
    assert memory.parse_size(text) == n


@pytest.mark.parametrize("text", ["", "lots", "4X", "-1G", "0", "1.5", "4 GiBB"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        memory.parse_size(text)


# ---- the estimate against the kernel -----------------------------------------------------------

KINDS = """app kinds {{
  t1 {{ select tcp }}
  t2 {{
    per_dst = count(), sum(pkt.len) by ip.dst size {n}
    recent = count() by ip.src size {n} on full lru
    total = count()
    pending = track (ip.src, ip.dst) open when tcp.syn close when tcp.fin expire 30s size {n}
    srcs = distinct(ip.src)
    heavy = cms(ip.src, width=1024, depth=4)
    regs = distinct(ip.src, registers=64) by ip.dst size {n}
  }}
  t3 {{ when total > 10 {{ send summary to asl every 1s }} }}
}}
"""


def assert_estimate_is_the_kernels(art):
    """Every map the loaded program created has the type, sizes and entries of its
    estimate, and the kernel charges what the estimate says (within the tolerance)."""
    est = memory.estimate(art.plan)
    before = map_fds()
    loaded = load_program(art.c)
    try:
        created = map_fds() - before
        assert len(created) == len(est.maps)
        growing = 0                 # LPM tries are estimated full and charged per entry: empty at load
        for m in est.maps:
            info = fdinfo(loaded.bpf[m.name].map_fd)
            assert (MAP_TYPES[int(info["map_type"])], int(info["key_size"]), int(info["value_size"]),
                    int(info["max_entries"])) == (m.bpf_type, m.key_size, m.value_size, m.entries), m.name
            charged = int(info["memlock"])
            if m.bpf_type == "lpm_trie":
                assert charged == memory.map_bytes(m.bpf_type, 0, m.key_size, m.value_size, est.cpus) == 0
                growing += m.bytes
                continue
            if m.grows:                  # a hash map not preallocated: its buckets only, at load
                buckets = memory.HTAB + memory.HTAB_BUCKET * (1 << (m.entries - 1).bit_length())
                assert abs(charged - buckets) <= memory.tolerance(buckets), (m.name, charged, buckets)
                growing += m.bytes - charged
                continue
            assert abs(m.bytes - charged) <= memory.tolerance(charged), (m.name, m.bytes, charged)
        total = est.total - growing
        assert abs(total - sum(int(fdinfo(fd)["memlock"]) for fd in created)) <= memory.tolerance(total)
    finally:
        loaded.close()


@pytest.mark.kernel
@pytest.mark.parametrize("n", [1, 1000, 1025, 100_000])
def test_estimate_is_the_kernels_for_every_kind(tmp_path, n):
    assert_estimate_is_the_kernels(compile_text(tmp_path, KINDS.format(n=n)))


@pytest.mark.kernel
def test_estimate_is_the_kernels_for_the_reference_specs(tmp_path):
    from compiler.driver import compile_files

    with cwd(ROOT):
        art = compile_files(SPECS)
    assert_estimate_is_the_kernels(art)


@pytest.mark.kernel
@pytest.mark.parametrize("typ,entries,key,value", [
    ("hash", 1, 4, 8), ("hash", 1000, 16, 24), ("hash", 5000, 24, 20), ("lru_hash", 1000, 16, 24),
    ("lru_hash", 3000, 40, 16), ("percpu_hash", 1000, 16, 24), ("lru_percpu_hash", 777, 8, 8),
    ("array", 1000, 4, 24), ("array", 65536, 4, 8), ("percpu_array", 100, 4, 24), ("ringbuf", 4096, 0, 0),
    ("ringbuf", 1 << 20, 0, 0),
])
def test_accounting_is_the_kernels(kernel, typ, entries, key, value):
    """Map types the generated program does not use (per-CPU hashes) too, made with BCC."""
    if typ == "ringbuf":
        decl = f"BPF_RINGBUF_OUTPUT(m, {entries // 4096});"
    elif typ in ("array", "percpu_array"):
        decl = f"BPF_TABLE(\"{typ}\", int, struct v, m, {entries});"
    else:
        decl = f"BPF_TABLE(\"{typ}\", struct k, struct v, m, {entries});"
    src = (f"struct k {{ __u8 b[{key or 1}]; }};\nstruct v {{ __u8 b[{value or 1}]; }} __attribute__((aligned(8)));\n"
           f"{decl}\nint f(struct xdp_md *ctx) {{ return 2; }}\n")
    if typ in ("array", "percpu_array"):
        key = 4
    if typ != "ringbuf":
        value = -(-value // 8) * 8              # struct v is aligned to 8
    b = kernel.BPF(text=src)
    try:
        info = fdinfo(b["m"].map_fd)
        assert int(info["value_size"]) == value
        charged = int(info["memlock"])
        est = memory.map_bytes(typ, entries, key, value, memory.possible_cpus())
        assert abs(est - charged) <= memory.tolerance(charged), (est, charged)
    finally:
        b.cleanup()


# ---- refusing before loading, and ENOMEM ----------------------------------------------------------

TWO_MAPS = "app a {\n  t2 { d = count() by ip.src size 1000\n       c = count() by ip.dst size 200000 }\n}\n"
REFUSED = ("a.mon:3:12: error: statistic a.c needs 17.7 MiB of kernel memory (hash map m_39a6d1: 200,000 entries, "
           "key 16 B, value 8 B); the program's maps need 19.7 MiB, above the memory budget of 4.0 MiB "
           "(set by --memory-budget)\n"
           "         c = count() by ip.dst size 200000 }\n"
           "             ^^^^^^^\n"
           "hint: declare fewer entries with 'size' (a hash map is allocated whole when the program loads), "
           "or raise the budget with --memory-budget\n"
           "1 error\n")


def test_check_refuses_above_the_budget(tmp_path):
    (tmp_path / "a.mon").write_text(TWO_MAPS)
    r = xdpmon(["check", "--memory-budget", "4Mi", "a.mon"], tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", REFUSED)
    r = xdpmon(["check", "--memory-budget", "32Mi", "a.mon"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a: mode always; t1 all packets; t2 2 stats (d, c); t3 0 rules; params -\n"
    assert r.stderr == ("(kernel memory 19.7 MiB of a 32.0 MiB budget; --memory lists the maps)\n"
                        "(2 notes; --notes shows them)\n")


def test_check_memory_lists_every_map(tmp_path):
    (tmp_path / "a.mon").write_text(TWO_MAPS)
    r = xdpmon(["check", "--memory", "--memory-budget", "1Gi", "a.mon"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    cpus = memory.possible_cpus()
    assert lines[1] == (f"kernel memory: 19.7 MiB in 13 maps ({cpus} possible CPUs); "
                        "budget 1.0 GiB (set by --memory-budget)")
    assert lines[2].split() == ["map", "type", "entries", "key", "value", "bytes", "statistics"]
    # largest first; a hash map of 200,000 entries is 18,595,424 B on 2 CPUs, 72 + 8 more per further CPU
    assert lines[3].split() == ["m_39a6d1", "hash", "200,000", "16", "8", f"{18_595_424 + (cpus - 2) * 80:,}", "a.c"]
    assert lines[4].split() == ["xm_blockhash", "hash", "10,000", "20", "24", "1,303,104", "(fixed)"]
    assert lines[5].split() == ["xm_blocklist", "lpm_trie", "10,000", "20", "24", "640,000", "(fixed)"]
    # a copy of 8 kB, no rule reads it: a value per CPU
    assert lines[6].split()[:3] == ["m_b91fab", "percpu_hash", "1,000"] and lines[6].split()[-1] == "a.d"
    assert len(lines) == 1 + 2 + 13 + 1 and lines[-1].split()[0] == "total"


def test_bad_budget_is_a_usage_error(tmp_path):
    (tmp_path / "a.mon").write_text(TWO_MAPS)
    r = xdpmon(["check", "--memory-budget", "lots", "a.mon"], tmp_path)
    assert r.returncode == 2
    assert "Invalid value for '--memory-budget': 'lots' is not a size" in r.stderr


@pytest.mark.kernel
def test_replay_refuses_before_loading(tmp_path, kernel):
    (tmp_path / "a.mon").write_text(TWO_MAPS)
    pcap = tmp_path / "x.pcap"
    subprocess.run([sys.executable, "-m", "examples.traffic", "benign", str(pcap)], cwd=ROOT, env=ENV,
                   check=True, capture_output=True, timeout=120)
    r = xdpmon(["replay", "--memory-budget", "4Mi", "a.mon", "--pcap", str(pcap)], tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", REFUSED)
    # the reference engine loads nothing into the kernel: no budget
    r = xdpmon(["replay", "--engine", "reference", "--memory-budget", "4Mi", "--json", "a.mon", "--pcap", str(pcap)],
               tmp_path)
    assert r.returncode == 0, r.stderr
    r = xdpmon(["replay", "--memory-budget", "32Mi", "--json", "a.mon", "--pcap", str(pcap)], tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.kernel
def test_engine_refuses_before_loading(tmp_path, kernel):
    from runtime.engines import open_engine

    art = compile_text(tmp_path, TWO_MAPS, replay=True)
    before = map_fds()
    with pytest.raises(SpecError) as e:
        open_engine("kernel", art, memory_budget=4 << 20)
    assert e.value.diagnostics[0].headline() == REFUSED.splitlines()[0]
    assert map_fds() == before                 # no map was created
    with open_engine("kernel", art, memory_budget=32 << 20) as eng:
        assert eng.memory.total == memory.estimate(art.plan).total


@pytest.mark.kernel
def test_compile_load_check_and_report_above_the_budget(tmp_path, kernel):
    (tmp_path / "a.mon").write_text(TWO_MAPS)
    r = xdpmon(["compile", "--load-check", "--memory-budget", "4Mi", "a.mon"], tmp_path)
    assert (r.returncode, r.stderr) == (2, REFUSED)
    r = xdpmon(["compile", "--report", "--json", "--memory-budget", "4Mi", "a.mon"], tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["loaded"] == {"error": "its maps need 19.7 MiB, above the memory budget of 4.0 MiB", "kind": "budget"}
    est = memory.estimate(compile_text(tmp_path, TWO_MAPS).plan)
    assert rep["memory"] == est.to_json(memory.Budget(4 << 20, ""))
    assert rep["memory"]["budget_bytes"] == 4 << 20 and rep["memory"]["total_bytes"] == est.total
    r = xdpmon(["compile", "--report", "--memory-budget", "1Gi", "a.mon"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "loaded program: " in r.stdout and "not loaded" not in r.stdout
    assert f"kernel memory: 19.7 MiB in 13 maps ({memory.possible_cpus()} possible CPUs)" in r.stdout


def too_big_for_this_machine() -> str:
    """A spec whose one hash map is larger than physical memory: the kernel refuses
    the allocation at once (vmalloc of more than all pages), allocating nothing.
    Each value is a keyed distinct with 1024 registers (1040 B) of other fields
    (identical ones would be merged into one)."""
    fields = ["ip.src", "tcp.sport", "tcp.dport", "pkt.len", "ip.ttl", "tcp.seq", "tcp.ackno", "tcp.window",
              "eth.src", "eth.dst", "ip.proto", "udp.sport", "udp.dport"]
    args = fields + [f"{a}, {b}" for i, a in enumerate(fields) for b in fields[i + 1:]]
    n = memory.physical_memory() // ((1 << 24) * 1040) + 2
    values = ", ".join(f"distinct({a}, registers=1024) as d{i}" for i, a in enumerate(args[:n]))
    return f"app big {{\n  t2 {{ s = {values} by ip.dst size 16Mi }}\n}}\n"


@pytest.mark.kernel
def test_enomem_is_memory_not_a_compiler_bug(tmp_path, kernel):
    spec = too_big_for_this_machine()
    (tmp_path / "a.mon").write_text(spec)
    art = compile_text(tmp_path, spec)
    # never load a map that would fit: it would take most of this machine's memory
    assert art.plan.maps[0].value.size * (1 << 24) > memory.physical_memory() * 1.2
    with pytest.raises(LoadError) as e:
        load_program(art.c)
    name = art.plan.maps[0].name
    assert (e.value.kind, e.value.map_name) == ("no_memory", name)
    assert str(e.value) == f"not enough memory: the kernel could not allocate BPF map {name} (ENOMEM)"
    for cmd in (["compile", "--load-check"], ["replay", "--pcap", "none.pcap"]):
        r = xdpmon([*cmd, "--memory-budget", "1024Ti", "a.mon"], tmp_path)
        assert r.returncode == 1, r.stderr
        first = r.stderr.splitlines()[0]       # the wording is tests/test_load_failures.py's
        assert first.endswith(f": {e.value}") and name in first
        assert "bug" not in r.stderr and "Traceback" not in r.stderr


# ---- snapshots in bounded chunks ---------------------------------------------------------------------

PEAK = r"""
import re, sys
from compiler.driver import compile_files
from runtime.engines import open_engine
from engine_helpers import udp

def hwm():
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

eng = open_engine("kernel", compile_files(["a.mon"], replay=True))
for i in range(3):
    for j in range(i + 1):
        eng.run_frame(10**9 + 1000 * (3 * i + j), udp(dst=f"198.19.0.{i + 1}"))
open("/proc/self/clear_refs", "w").write("5")     # the peak RSS is now the current RSS
before = hwm()
snap = eng.snapshot()
print(hwm() - before)
print(repr(snap["apps"]["a"]["stats"]["c"]))
eng.close()
"""


@pytest.mark.kernel
@pytest.mark.slow
def test_snapshot_of_a_huge_map_reads_only_its_entries(tmp_path, kernel):
    """A 16 Mi-entry hash map (1.4 GiB of kernel memory) holding three keys: the
    snapshot's peak memory is that of a chunk and the three entries, far below the
    16 Mi x (16 + 8) B = 384 MiB that buffers sized to the map would take (BCC's
    items_lookup_batch does). Measured in a subprocess, as the growth of its peak
    RSS (VmHWM, reset just before: ru_maxrss cannot be reset, and clang's peak
    while compiling the program would hide the snapshot's)."""
    (tmp_path / "a.mon").write_text("app a { t2 { c = count() by ip.dst size 16Mi } }\n")
    (tmp_path / "peak.py").write_text(PEAK)
    r = subprocess.run([sys.executable, "peak.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=ENV)
    assert r.returncode == 0, r.stderr
    growth, stats = r.stdout.splitlines()
    assert eval(stats) == [{"key": {"ip.dst": f"198.19.0.{i}"}, "value": {"count": i}} for i in (1, 2, 3)]
    size_proportional = (1 << 24) * (16 + 8)
    assert int(growth) < size_proportional // 64, growth          # 6 MiB


def test_chunks_are_bounded():
    assert batch.chunk_entries(16, 8) == 43_690                   # 1 MiB of keys and values
    assert batch.chunk_entries(16, 2080) == 500
    assert batch.chunk_entries(16, 65536) == batch.MIN_CHUNK
    assert batch.chunk_entries(4, 4) == batch.MAX_CHUNK


BATCH_MAPS = r"""
struct k { __u64 a, b; };
BPF_TABLE("hash", struct k, __u64, h, 100000);
BPF_TABLE("lru_hash", struct k, __u64, l, 1000);
BPF_ARRAY(a, __u64, 5000);
BPF_DEVMAP(dm, 4);
int f(struct xdp_md *ctx) { return 2; }
"""


@pytest.mark.kernel
def test_batches_read_every_entry(kernel):
    b = kernel.BPF(text=BATCH_MAPS)
    try:
        h, lru, arr = b["h"], b["l"], b["a"]
        for i in range(70_000):                 # two chunks
            h[h.Key(i, 3 * i)] = ctypes.c_uint64(i + 7)
        for i in range(10):
            lru[lru.Key(i, 1)] = ctypes.c_uint64(i)
        for i in range(0, 5000, 7):
            arr[arr.Key(i)] = ctypes.c_uint64(i + 1)
        chunks = list(batch.lookup_batches(h.map_fd, 16, 8))
        assert len(chunks) == 2 and all(len(c) <= batch.chunk_entries(16, 8) for c in chunks)
        got = {int.from_bytes(k[:8], "little"): (int.from_bytes(k[8:], "little"), int.from_bytes(v, "little"))
               for c in chunks for k, v in c}
        assert got == {i: (3 * i, i + 7) for i in range(70_000)}
        assert sorted(batch.read_entries(lru.map_fd, 16, 8)) == sorted(batch.walk_keys(lru.map_fd, 16, 8))
        assert len(batch.read_entries(lru.map_fd, 16, 8)) == 10
        values = batch.read_entries(arr.map_fd, 4, 8)          # every index, in order
        assert [int.from_bytes(k, "little") for k, _ in values] == list(range(5000))
        assert [int.from_bytes(v, "little") for _, v in values] == [i + 1 if i % 7 == 0 else 0 for i in range(5000)]
    finally:
        b.cleanup()


@pytest.mark.kernel
def test_maps_without_batches_are_walked(kernel):
    """A device map has no batch lookup (ENOTSUPP): its keys are walked."""
    b = kernel.BPF(text=BATCH_MAPS)
    try:
        dm = b["dm"]
        dm[dm.Key(2)] = dm.Leaf(1)              # the loopback device
        with pytest.raises(batch.BatchUnsupported, match="not supported for this map type"):
            list(batch.lookup_batches(dm.map_fd, 4, 4))
        assert batch.read_entries(dm.map_fd, 4, 4) == [((2).to_bytes(4, "little"), (1).to_bytes(4, "little"))]
    finally:
        b.cleanup()
