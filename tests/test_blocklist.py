"""The blocklist: the program's trie and filter state (codegen_templates/xdp_program.c.j2)
under BPF_PROG_TEST_RUN (the replay build, on the capture clock) and in the reference
engine, written by runtime/control/blocklist.py through the Controller. Exact counts:
the entry's hits, blocklist.logged / .dropped, verdict.drop, what the apps counted."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import IPv6, UDP

from engine_helpers import S, Eth, EngineMaker, stat, tcp
from runtime.control.blocklist import Blocklist, key_of, parse_prefix
from runtime.control.controller import ControlError, Controller
from compiler.abi import FILTER_ENFORCE as ENFORCE, FILTER_HASHED as HASHED, FILTER_PREFIXES as PREFIXES

SPEC = """app a {
  t2 {
    by_src = count() by ip.src
    total = count()
  }
}
"""
V4_ONLY = "app v4 {\n  t2 { n = count() by ipv4.src }\n}\n"
XDP_DROP, XDP_PASS = 1, 2


def udp6(src="2001:2::1", dst="2001:2::99"):
    return bytes(Eth() / IPv6(src=src, dst=dst) / UDP(sport=1000, dport=2000))


class Clock:
    """The capture clock the test runs frames on (the program's clock in replay)."""

    def __init__(self, t=S):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture(params=["kernel", "reference"])
def make(request, tmp_path):
    if request.param == "kernel":
        request.getfixturevalue("kernel")
    m = EngineMaker(request.param, tmp_path)
    yield m
    m.close()


def setup(make, spec=SPEC, **kw):
    eng = make(spec)
    clock = Clock()
    bl = Blocklist.for_program(eng.manifest, eng.maps, clock, **kw)
    return eng, Controller(eng.manifest, eng.maps, clock, blocklist=bl), clock


def feed(eng, clock, frames):
    out = []
    for f in frames:
        out.append(eng.run_frame(clock.t, f))
        clock.t += 1000
    return out


def by_src(snap):
    return {e["key"]["ip.src"]: e["value"]["count"] for e in stat(snap, "a", "by_src")}


def blocked(ctl, prefix):
    return next(e for e in ctl.blocks() if e["prefix"] == prefix)


# ---- in the program ------------------------------------------------------------------------

@pytest.mark.parametrize("prefix,hit,miss", [
    ("198.18.0.7", "198.18.0.7", "198.18.0.8"),
    ("198.18.5.0/24", "198.18.5.200", "198.18.6.1"),
])
def test_log_only_passes_counts_hits_and_the_apps_see_them(make, prefix, hit, miss):
    eng, ctl, clock = setup(make)
    e = ctl.block(prefix, ttl="1m", reason="scanner")
    assert (e["prefix"], e["action"], e["reason"], e["hits"], e["expires_ns"]) == (
        str(ipaddress.ip_network(prefix)), "would drop", "scanner", 0, S + 60 * S)
    plen = key_of(parse_prefix(prefix))[0]
    assert eng.maps.filter_state_full() == (1, HASHED, 0, (plen,))     # one length: the hash map
    verdicts = feed(eng, clock, [tcp(src=hit)] * 5 + [tcp(src=miss)] * 3)
    assert verdicts == [XDP_PASS] * 8
    snap = eng.snapshot()
    c = snap["counters"]
    assert (c["blocklist.logged"], c["blocklist.dropped"], c["verdict.drop"], c["verdict.pass"]) == (5, 0, 0, 8)
    assert by_src(snap) == {hit: 5, miss: 3}
    assert stat(snap, "a", "total") == {"value": {"count": 8}}
    assert blocked(ctl, str(ipaddress.ip_network(prefix)))["hits"] == 5


def test_an_ipv6_64(make):
    eng, ctl, clock = setup(make)
    ctl.block("2001:2:0:1::/64", ttl="1m")
    assert key_of(parse_prefix("2001:2:0:1::/64"))[0] == 64
    feed(eng, clock, [udp6("2001:2:0:1::5")] * 4 + [udp6("2001:2:0:2::5")] * 2 + [tcp(src="198.18.0.1")])
    snap = eng.snapshot()
    assert snap["counters"]["blocklist.logged"] == 4
    assert blocked(ctl, "2001:2:0:1::/64")["hits"] == 4
    assert by_src(snap) == {"2001:2:0:1::5": 4, "2001:2:0:2::5": 2, "198.18.0.1": 1}


def test_enforce_drops_before_the_apps(make):
    eng, ctl, clock = setup(make, enforce=True)
    ctl.block("198.18.9.0/24", ttl="1m")
    assert ctl.blocks()[0]["action"] == "drop"
    assert eng.maps.filter_state() == (1, ENFORCE | HASHED)
    verdicts = feed(eng, clock, [tcp(src="198.18.9.1")] * 6 + [tcp(src="198.18.10.1")] * 2)
    assert verdicts == [XDP_DROP] * 6 + [XDP_PASS] * 2
    snap = eng.snapshot()
    c = snap["counters"]
    assert (c["blocklist.dropped"], c["verdict.drop"], c["blocklist.logged"], c["verdict.pass"], c["frames"]) == (
        6, 6, 0, 2, 8)
    assert by_src(snap) == {"198.18.10.1": 2}            # dropped frames are not counted by apps
    assert stat(snap, "a", "total") == {"value": {"count": 2}}
    assert ctl.blocks()[0]["hits"] == 6
    ctl.blocklist.set_enforce(False)                     # back to log-only, at once
    assert feed(eng, clock, [tcp(src="198.18.9.1")]) == [XDP_PASS]
    assert eng.snapshot()["counters"]["blocklist.logged"] == 1


def test_the_longest_prefix_decides(make):
    eng, ctl, clock = setup(make, enforce=True)
    ctl.block("198.18.0.0/16", ttl="1m")
    ctl.block("198.18.3.3", ttl="1m")
    feed(eng, clock, [tcp(src="198.18.3.3")] * 2 + [tcp(src="198.18.3.4")] * 3)
    hits = {e["prefix"]: e["hits"] for e in ctl.blocks()}
    assert hits == {"198.18.0.0/16": 3, "198.18.3.3/32": 2}
    assert eng.snapshot()["counters"]["blocklist.dropped"] == 5


def test_expiry_on_the_capture_clock_and_sweep(make):
    eng, ctl, clock = setup(make, enforce=True)
    ctl.block("198.18.0.7", ttl="2s")                      # expires at 3 s on the capture clock
    clock.t = 3 * S - 2000
    assert feed(eng, clock, [tcp(src="198.18.0.7")] * 3) == [XDP_DROP, XDP_DROP, XDP_PASS]   # 3 s: expired
    assert ctl.blocks()[0]["hits"] == 2 and ctl.blocks()[0]["ttl_left_ns"] == 0
    assert eng.maps.filter_state() == (1, ENFORCE | HASHED)
    gone = ctl.sweep()
    assert [(g["prefix"], g["hits"]) for g in gone] == [("198.18.0.7/32", 2)]
    assert ctl.blocks() == [] and eng.maps.filter_state() == (0, ENFORCE) and eng.maps.block_items() == {}
    snap = eng.snapshot()
    assert (snap["counters"]["blocklist.dropped"], by_src(snap)) == (2, {"198.18.0.7": 1})
    assert ctl.blocklist.counters()["blocklist.expired"] == 1


def test_an_expired_host_entry_falls_back_to_a_live_prefix(make):
    """A live host entry decides; once it has expired the next longest prefix holding the
    address does (here a live /24), before the sweep removes it."""
    eng, ctl, clock = setup(make, enforce=True)
    ctl.block("198.18.4.4", ttl="2s")                      # expires at 3 s
    ctl.block("198.18.4.0/24", ttl="1m")
    assert eng.maps.filter_state() == (2, ENFORCE | HASHED)
    clock.t = 3 * S - 2000
    assert feed(eng, clock, [tcp(src="198.18.4.4")] * 4) == [XDP_DROP] * 4
    assert {e["prefix"]: e["hits"] for e in ctl.blocks()} == {"198.18.4.0/24": 2, "198.18.4.4/32": 2}
    ctl.sweep()
    assert eng.maps.filter_state() == (1, ENFORCE | HASHED)
    assert sorted(eng.maps.block_items()) == [(96 + 24, bytes(10) + b"\xff\xff" + bytes([198, 18, 4, 0]))]


def test_the_bit_array_follows_the_hash_entries(kernel, tmp_path):
    """A (length, masked source)'s bit gates the hash map: set while an entry hashes there,
    cleared with the last one; the words in the kernel are what user space computes, and a
    frame matches through them (a bit left clear would make the entry miss)."""
    import struct

    from compiler import abi
    m = EngineMaker("kernel", tmp_path)
    try:
        eng, ctl, clock = setup(m)
        bits = eng.loaded.bpf[abi.BLOCKBITS_MAP]

        def bit(prefix):
            plen, addr = key_of(parse_prefix(prefix))
            w = struct.unpack("=4I", addr)
            return (((w[0] ^ w[1] ^ w[2] ^ w[3] ^ plen) * abi.BLOCKBITS_MUL) & 0xFFFFFFFF) >> 16

        def words():
            return {i.value: v.value for i, v in bits.items() if v.value}

        def want(*prefixes):
            out = {}
            for x in map(bit, prefixes):
                out[x >> 6] = out.get(x >> 6, 0) | 1 << (x & 63)
            return out

        ctl.block("198.18.0.7", ttl="1m")
        assert words() == want("198.18.0.7")
        ctl.block("198.18.0.0/16", ttl="1m")
        ctl.block("198.18.0.8", ttl="1m")
        assert words() == want("198.18.0.7", "198.18.0.0/16", "198.18.0.8")
        assert feed(eng, clock, [tcp(src="198.18.0.7"), tcp(src="198.18.0.9")]) == [XDP_PASS, XDP_PASS]
        assert {e["prefix"]: e["hits"] for e in ctl.blocks()} == {"198.18.0.0/16": 1, "198.18.0.7/32": 1,
                                                                   "198.18.0.8/32": 0}
        ctl.unblock("198.18.0.7")
        ctl.unblock("198.18.0.8")
        assert words() == want("198.18.0.0/16")
        ctl.unblock("198.18.0.0/16")
        assert words() == {}
    finally:
        m.close()


def v4_len(n):
    return 96 + n


def test_lengths_past_the_hash_maps_go_to_the_trie_and_the_longest_still_decides(make):
    """The first lens_max (8) prefix lengths take the hash map, longest looked up first;
    the entries of a ninth length are in the trie. Whichever holds the longer live match
    decides: a trie /8 below hashed /9../16 prefixes, and a trie /20 above a hashed /16."""
    eng, ctl, clock = setup(make, enforce=False)
    assert eng.manifest.filters.lens_max == 8
    for n in range(9, 17):                                 # /9 ... /16 around 198.18.0.0: the hash map
        ctl.block(str(ipaddress.ip_network(f"198.18.0.0/{n}", strict=False)), ttl="1m")
    ctl.block("10.0.0.0/8", ttl="1m")                      # a ninth length: the trie
    assert eng.maps.filter_state_full() == (9, HASHED | PREFIXES, v4_len(8), tuple(v4_len(n) for n in range(16, 8, -1)))
    ctl.block("198.18.0.0/20", ttl="1m")                   # a tenth: the trie too, longer than any hashed
    assert eng.maps.filter_state_full()[2] == v4_len(20)
    feed(eng, clock, [tcp(src="198.18.0.1")] * 3 + [tcp(src="198.18.16.1")] * 2 + [tcp(src="10.1.1.1")]
         + [tcp(src="198.19.0.1")] + [tcp(src="198.0.0.1")])
    hits = {e["prefix"]: e["hits"] for e in ctl.blocks() if e["hits"]}
    assert hits == {"198.18.0.0/20": 3, "198.18.0.0/16": 2, "10.0.0.0/8": 1, "198.18.0.0/15": 1,
                    "198.0.0.0/11": 1}
    assert eng.snapshot()["counters"]["blocklist.logged"] == 8


def test_a_length_gives_up_its_place_with_its_last_entry(make):
    eng, ctl, clock = setup(make, enforce=True)
    for n in range(17, 25):                                 # 8 lengths: the hash map is full of lengths
        ctl.block(str(ipaddress.ip_network(f"198.18.0.0/{n}", strict=False)), ttl="1m")
    ctl.block("198.19.0.0/16", ttl="1m")                   # the trie
    ctl.unblock("198.18.0.0/24")                           # /24 gives up its place ...
    assert eng.maps.filter_state_full()[3] == tuple(v4_len(n) for n in range(23, 16, -1))
    ctl.block("198.19.0.0/16", ttl="2m")   # renewing keeps it in the trie
    ctl.block("198.19.0.0/25", ttl="1m")                   # ... which a new length takes
    st = eng.maps.filter_state_full()
    assert st == (9, ENFORCE | HASHED | PREFIXES, v4_len(16), (v4_len(25),) + tuple(v4_len(n) for n in range(23, 16, -1)))
    assert feed(eng, clock, [tcp(src="198.19.0.1"), tcp(src="198.19.0.200"), tcp(src="198.18.0.1")]) == [XDP_DROP] * 3
    assert {e["prefix"]: e["hits"] for e in ctl.blocks() if e["hits"]} == {
        "198.19.0.0/25": 1, "198.19.0.0/16": 1, "198.18.0.0/23": 1}
    ctl.unblock("198.19.0.0/16")
    assert eng.maps.filter_state_full()[:3] == (8, ENFORCE | HASHED, 0)


def test_renew_keeps_hits_and_moves_expiry(make):
    eng, ctl, clock = setup(make)
    ctl.block("198.18.0.7", ttl="2s", reason="first")
    feed(eng, clock, [tcp(src="198.18.0.7")] * 2)
    clock.t = 2 * S
    e = ctl.block("198.18.0.7/32", ttl="10s", reason="again")
    assert (e["hits"], e["expires_ns"], e["reason"], e["added_ns"], e["renewed_ns"]) == (2, 12 * S, "again", S, 2 * S)
    assert eng.maps.filter_state() == (1, HASHED)
    clock.t = 5 * S                                        # past the first expiry, inside the renewed one
    feed(eng, clock, [tcp(src="198.18.0.7")])
    assert ctl.blocks()[0]["hits"] == 3
    assert ctl.blocklist.counters()["blocklist.renewed"] == 1


def test_unblock(make):
    eng, ctl, clock = setup(make, enforce=True)
    ctl.block("198.18.0.7", ttl="1m")
    ctl.block("2001:2::/48", ttl="1m")
    assert feed(eng, clock, [tcp(src="198.18.0.7")]) == [XDP_DROP]
    e = ctl.unblock("198.18.0.7")
    assert (e["prefix"], e["hits"]) == ("198.18.0.7/32", 1)
    assert eng.maps.filter_state() == (1, ENFORCE | HASHED)
    assert feed(eng, clock, [tcp(src="198.18.0.7")]) == [XDP_PASS]
    ctl.unblock("2001:2::/48")
    assert eng.maps.filter_state() == (0, ENFORCE) and ctl.blocks() == []
    with pytest.raises(ControlError, match=r"^198\.18\.0\.7/32 is not blocked \(blocked: none\)$"):
        ctl.unblock("198.18.0.7")


def test_refusals(make):
    eng, ctl, clock = setup(make, allow=["198.18.0.1", ("2001:2::/64", "an address of mon")], max_entries=3)
    with pytest.raises(ControlError, match=r"^'198\.18\.0\.1/24' has host bits set: the /24 network holding "
                                           r"it is 198\.18\.0\.0/24; block that, or the address alone$"):
        ctl.block("198.18.0.1/24")
    with pytest.raises(ControlError, match=r"^'not-an-address' is not an address or prefix"):
        ctl.block("not-an-address")
    with pytest.raises(ControlError, match=r"^cannot block 198\.18\.0\.0/24: it contains the allowed prefix "
                                           r"198\.18\.0\.1/32 \(--allow\); allowed prefixes are never blocked$"):
        ctl.block("198.18.0.0/24")
    with pytest.raises(ControlError, match=r"^cannot block 2001:2::5/128: it is inside the allowed prefix "
                                           r"2001:2::/64 \(an address of mon\)"):
        ctl.block("2001:2::5")
    with pytest.raises(ControlError, match=r"^cannot block 198\.18\.0\.1/32: it is the allowed prefix"):
        ctl.block("::ffff:198.18.0.1")                     # v4-mapped is the IPv4 address
    with pytest.raises(ControlError, match=r"^cannot block 198\.18\.0\.9/32 for 25h: a block lasts more than 0 "
                                           r"and at most 24h \(every block expires; add it again to renew it\)$"):
        ctl.block("198.18.0.9", ttl="25h")
    with pytest.raises(ControlError, match=r"for 0: a block lasts more than 0"):
        ctl.block("198.18.0.9", ttl=0)
    for v6 in ("::/0", "::/80", "::fffe:0:0/95"):
        with pytest.raises(ControlError, match=rf"^cannot block {v6}: it holds ::ffff:0:0/96, where the program "
                                               r"keeps every IPv4 address, and an IPv6 block never covers IPv4: "
                                               r"block 0\.0\.0\.0/0 for all of IPv4, and IPv6 prefixes such as "
                                               r"2000::/3 for IPv6$"):
            ctl.block(v6)
    assert ctl.block("198.18.0.9", ttl="24h")["expires_ns"] == S + 24 * 3600 * S
    ctl.block("198.18.0.10")                               # the default TTL: 5 minutes
    assert blocked(ctl, "198.18.0.10/32")["expires_ns"] == S + 300 * S
    ctl.block("198.18.0.11")
    with pytest.raises(ControlError, match=r"^cannot block 198\.18\.0\.12/32: the blocklist is full \(3 prefixes\)"):
        ctl.block("198.18.0.12")
    ctl.block("198.18.0.11", ttl="1m")                    # renewing at the bound is no new entry
    assert eng.maps.filter_state() == (3, HASHED) and len(eng.maps.block_items()) == 3
    c = ctl.blocklist.counters()
    assert (c["blocklist.refused_full"], c["blocklist.refused_allowlist"], c["blocklist.refused_ttl"],
            c["blocklist.added"], c["blocklist.renewed"]) == (1, 3, 2, 3, 1)


def test_the_bound_of_the_program(make):
    eng, ctl, clock = setup(make)
    f = eng.manifest.filters
    assert (f.max_entries, f.blocklist_map, f.families) == (10_000, "xm_blocklist", ("ipv4", "ipv6"))
    with pytest.raises(ControlError, match=r"^a blocklist holds 1 to 10,000 prefixes"):
        Blocklist.for_program(eng.manifest, eng.maps, clock, max_entries=10_001)


def test_a_family_the_program_does_not_parse_is_refused(make):
    eng, ctl, clock = setup(make, spec=V4_ONLY)
    assert eng.manifest.filters.families == ("ipv4",)
    with pytest.raises(ControlError, match=r"^cannot block 2001:2::/64: this program parses ipv4 only"):
        ctl.block("2001:2::/64")
    ctl.block("198.18.0.7", ttl="1m")
    feed(eng, clock, [tcp(src="198.18.0.7")] * 2)
    assert ctl.blocks()[0]["hits"] == 2


def test_frames_per_interface(make):
    eng, ctl, clock = setup(make)
    eng.maps.set_interfaces([1, 7])                        # the test run's ingress_ifindex is 1 (lo)
    frames = [tcp(src="198.18.0.1")] * 3 + [udp6()] * 2
    feed(eng, clock, frames)
    assert eng.maps.interface_counters() == {1: {"frames": 5, "bytes": sum(len(f) for f in frames)},
                                             7: {"frames": 0, "bytes": 0}}


def test_the_engines_agree(kernel, tmp_path):
    """The same blocks and frames through both engines: the same verdicts, counters,
    statistics and trie entries."""
    results = []
    for kind in ("kernel", "reference"):
        m = EngineMaker(kind, tmp_path / kind)
        (tmp_path / kind).mkdir()
        try:
            eng, ctl, clock = setup(m, enforce=False)
            ctl.block("198.18.0.0/24", ttl="3s")
            ctl.block("198.18.0.128/25", ttl="1s")
            ctl.block("2001:2::/64", ttl="2s")
            frames = [tcp(src=f"198.18.0.{i}") for i in range(0, 256, 7)] + [udp6(f"2001:2::{i}") for i in range(9)]
            v = feed(eng, clock, frames)
            ctl.blocklist.set_enforce(True)
            clock.t = int(1.5 * S)
            v += feed(eng, clock, frames)
            snap = eng.snapshot()
            results.append((v, snap["counters"], snap["apps"], eng.maps.block_items(), eng.maps.filter_state()))
        finally:
            m.close()
    assert results[0] == results[1]
    assert results[0][1]["blocklist.dropped"] > 0 and results[0][1]["blocklist.logged"] > 0


# ---- prefixes (no program) ---------------------------------------------------------------------

@pytest.mark.parametrize("text,plen,addr", [
    ("198.18.0.7", 128, "::ffff:198.18.0.7"),
    ("198.18.5.0/24", 120, "::ffff:198.18.5.0"),
    ("2001:2::/64", 64, "2001:2::"),
    ("::ffff:198.18.0.0/112", 112, "::ffff:198.18.0.0"),
])
def test_keys_are_the_programs_form(text, plen, addr):
    assert key_of(parse_prefix(text)) == (plen, ipaddress.IPv6Address(addr).packed)


def test_the_trie_is_charged_as_estimated(kernel, tmp_path):
    """compiler/memory.py costs the trie and the hash map full; the kernel charges them per
    entry present (the hash map also its buckets, at once)."""
    from compiler import memory

    m = EngineMaker("kernel", tmp_path)
    try:
        eng, ctl, clock = setup(m)
        def charged(name):
            fd = eng.loaded.bpf[name].map_fd
            return next(int(line.split()[1]) for line in open(f"/proc/self/fdinfo/{fd}") if line.startswith("memlock"))

        # the empty hash map's charge (struct bpf_htab and the buckets) differs by tens of
        # bytes between kernels (6.18 charges 64 less than 6.12): within the tolerance; each
        # entry present then adds exactly one element's
        bare = charged("xm_blockhash")
        for n in range(25, 33):                              # 8 lengths: the hash map's places
            ctl.block(str(ipaddress.ip_network(f"198.17.0.0/{n}", strict=False)), ttl="1m")
        for i in range(1000):                                # a ninth length: the trie
            ctl.block(f"198.{18 + i // 256}.{i % 256}.0/24", ttl="1m")
        assert charged("xm_blocklist") == memory.map_bytes("lpm_trie", 1000, 20, 24, 1) == 64_000
        assert memory.estimate(m.arts[0].plan).map("xm_blocklist").bytes == 640_000
        empty = memory.HTAB + memory.HTAB_BUCKET * 16384        # the buckets of 10,000 (a power of two)
        assert empty == 263_104 and abs(bare - empty) <= memory.tolerance(empty)
        per_entry = (memory.map_bytes("hash", 10_000, 20, 24, 1, prealloc=False) - empty) // 10_000
        assert per_entry == 104                              # htab_elem, key (20, to 24), value, llist node
        assert charged("xm_blockhash") == bare + 8 * per_entry
        for i in range(1000):                                # single addresses: the hash map
            ctl.block(f"198.18.{i // 256}.{i % 256}", ttl="1m")
        assert charged("xm_blockhash") == bare + 1008 * per_entry
        assert memory.estimate(m.arts[0].plan).map("xm_blockhash").bytes == empty + 10_000 * per_entry
        assert eng.maps.filter_state() == (2008, HASHED | PREFIXES)
    finally:
        m.close()
