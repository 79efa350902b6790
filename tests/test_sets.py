"""Large ``in { ... }`` sets are one map lookup, not code (compiler/plan.py:
set_plans; runtime/dataplane/sets.py fills the maps): 20,000 prefixes in an LPM
trie, 10,000 ports in a byte array, wide integers and MACs in hash sets. Each is
checked on both engines against an independent oracle (Python's ipaddress and
set membership) on frames chosen half inside, half outside the set.
"""

from __future__ import annotations

import ipaddress
import random

from scapy.all import IP, IPv6, TCP, Ether

from engine_helpers import Eth, run, stat, tcp


def _prefixes(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    out = set()
    while len(out) < n:
        length = rnd.choice([32, 32, 32, 24, 28, 20])
        net = ipaddress.ip_network(f"198.{18 + rnd.randrange(2)}.{rnd.randrange(256)}.{rnd.randrange(256)}/{length}",
                                   strict=False)
        out.add(str(net))
    return sorted(out)


def test_20000_prefixes_are_one_lpm_lookup(engine):
    v4 = _prefixes(19_990)
    v6 = [f"2001:2:0:{i:x}::/64" for i in range(10)]
    eng = engine(f"app a {{ t1 {{ select ip.dst in {{ {', '.join(v4 + v6)} }} }} t2 {{ n = count() by ip.dst }} }}\n")
    (s,) = eng.manifest.raw["sets"]
    assert (s["kind"], s["field"], s["key_size"], len(s["members"])) == ("lpm", "ip.dst", 20, 20_000)
    nets = [ipaddress.ip_network(p) for p in v4 + v6]
    rnd = random.Random(3)
    frames, want = [], {}
    for i in range(600):
        if i % 3 == 2:
            dst = f"2001:2:0:{rnd.randrange(20):x}::{rnd.randrange(1, 99)}"
            f = bytes(Eth() / IPv6(src="2001:2::1", dst=dst) / TCP(sport=1, dport=2))
        else:
            dst = f"198.{18 + rnd.randrange(2)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
            f = tcp(dst=dst)
        frames.append(f)
        addr = ipaddress.ip_address(dst)
        if any(addr in n for n in nets if n.version == addr.version):
            want[str(addr)] = want.get(str(addr), 0) + 1
    run(eng, frames)
    got = {e["key"]["ip.dst"]: e["value"]["count"] for e in stat(eng.snapshot(), "a", "n")}
    assert got == want and 100 < sum(want.values()) < 500


def test_10000_ports_are_one_array_lookup(engine):
    ports = sorted(random.Random(5).sample(range(1, 65536), 9_990))
    items = [str(p) for p in ports] + ["40000..40100"] * 1 + [str(p) for p in range(9)]
    eng = engine(f"app a {{ t1 {{ select tcp.dport in {{ {', '.join(items)} }} }} t2 {{ n = count() }} }}\n")
    (s,) = eng.manifest.raw["sets"]
    assert (s["kind"], s["entries"]) == ("array", 65536)
    member = set(ports) | set(range(40000, 40101)) | set(range(9))
    probe = list(range(0, 65536, 97)) + [40000, 40100, 40101, 39999]
    run(eng, [tcp(dport=p) for p in probe])
    assert stat(eng.snapshot(), "a", "n") == {"value": {"count": sum(p in member for p in probe)}}


def test_wide_integers_hash_and_ranges_stay_inline(engine):
    seqs = list(range(1_000_000, 1_000_000 + 40 * 7, 7))
    items = [str(v) for v in seqs] + ["4000000000..4000000010", "3000000000..3000000100"]
    eng = engine(f"app a {{ t1 {{ select tcp.seq in {{ {', '.join(items)} }} }} t2 {{ n = count() }} }}\n")
    (s,) = eng.manifest.raw["sets"]
    assert (s["kind"], len(s["members"])) == ("hash", 40)
    probe = [1_000_000, 1_000_007, 1_000_001, 3_000_000_050, 3_000_000_101, 2**32 - 1, 1_000_273, 1_000_280, 4_000_000_010]
    frames = [bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1") / TCP(seq=v)) for v in probe]
    run(eng, frames)
    member = set(seqs) | set(range(3_000_000_000, 3_000_000_101)) | set(range(4_000_000_000, 4_000_000_011))
    assert stat(eng.snapshot(), "a", "n") == {"value": {"count": sum(v in member for v in probe)}}


def test_macs_hash(engine):
    macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(1, 41)]
    eng = engine(f"app a {{ t1 {{ select eth.src in {{ {', '.join(macs)} }} }} t2 {{ n = count() by eth.src }} }}\n")
    (s,) = eng.manifest.raw["sets"]
    assert (s["kind"], s["key_size"]) == ("hash", 6)
    frames = [bytes(Ether(src=m, dst="02:00:00:00:00:02") / IP(src="198.18.0.1", dst="198.19.0.1") / TCP()) for m in
              ["02:00:00:00:00:01", "02:00:00:00:00:28", "02:00:00:00:00:29", "02:00:00:00:00:01"]]
    run(eng, frames)
    got = {e["key"]["eth.src"]: e["value"]["count"] for e in stat(eng.snapshot(), "a", "n")}
    assert got == {"02:00:00:00:00:01": 2, "02:00:00:00:00:28": 1}


def test_ipv4_field_prefixes(engine):
    pfx = _prefixes(100, seed=11)
    eng = engine(f"app a {{ t1 {{ select ipv4.src in {{ {', '.join(pfx)} }} }} t2 {{ n = count() }} }}\n")
    (s,) = eng.manifest.raw["sets"]
    assert (s["kind"], s["key_size"]) == ("lpm", 8)
    nets = [ipaddress.ip_network(p) for p in pfx]
    rnd = random.Random(12)
    srcs = [f"198.{18 + rnd.randrange(2)}.{rnd.randrange(256)}.{rnd.randrange(256)}" for _ in range(300)]
    srcs += [str(n.network_address) for n in nets[:20]]
    run(eng, [tcp(src=a) for a in srcs])
    want = sum(any(ipaddress.ip_address(a) in n for n in nets) for a in srcs)
    assert stat(eng.snapshot(), "a", "n") == {"value": {"count": want}} and want >= 20


def test_small_sets_stay_inline(tmp_path):
    from spec_helpers import compile_text

    art = compile_text(tmp_path, "app a { t1 { select tcp.dport in {" + ", ".join(map(str, range(1, 17))) + "} } }")
    assert art.manifest["sets"] == [] and "xm_set_" not in art.c
    art = compile_text(tmp_path, "app a { t1 { select tcp.dport in {" + ", ".join(map(str, range(1, 18))) + "} } }")
    assert [s["kind"] for s in art.manifest["sets"]] == ["array"] and art.c.count("xm_set_") == 2
