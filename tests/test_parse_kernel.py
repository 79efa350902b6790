"""The XDP packet parser, run for real in the kernel, against the Python reference decoder.

codegen_templates/parse.c.j2 is rendered into a small test XDP program that calls
xm_parse() and writes the outcome, the whole struct xm_pkt and every catalog field (read
through its compiler/c_fields.py expression, compiled by clang) into a one-slot array
map. Frames go through BPF_PROG_TEST_RUN (runtime/dataplane/bpf_test_run.py) and each result is
compared, field by field, with runtime/engines/reference/decoder.py.

Frames: hand-made with scapy, every prefix of a few of them, seeded random mutations,
and every frame of every capture in ../shared/corpus/tcpdump-tests/ (read in place).
"""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path

import pytest

from compiler import codegen, parse_outcomes as po
from compiler.c_fields import C_FIELDS, LAYER_BITS
from spec_helpers import closed
from dsl.fields import FIELDS, LAYERS
from runtime.dataplane import bpf_test_run as btr
from runtime.engines.reference import decoder as ref

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("XDPMON_CORPUS", ROOT.parent / "shared" / "corpus" / "tcpdump-tests"))
XDP_PASS = 2
ALL = frozenset(LAYERS)


# ---------------------------------------------------------------------------------------
# Building the test program
# ---------------------------------------------------------------------------------------

def render_parser(layers, ipv6_ext_max: int = ref.IPV6_EXT_MAX) -> str:
    """The parser the compiler renders for a request of ``layers``."""
    return codegen.render_parser(po.decoders_for(layers), ipv6_ext_max)


def _slot(name: str) -> str:
    return "f_" + name.replace(".", "_")


SCALAR_FIELDS = [cf for cf in C_FIELDS.values() if cf.either is None]


def test_program(layers, ipv6_ext_max: int = ref.IPV6_EXT_MAX) -> str:
    decls, code = [], []
    for cf in SCALAR_FIELDS:
        s = _slot(cf.name)
        if cf.is_array or cf.ctype == "__be32":
            # Addresses: copy the network-order bytes as they are.
            decls.append(f"    __u8 {s}[{cf.nbytes}];")
            if cf.is_array:
                code.append(f"    __builtin_memcpy(o->{s}, {cf.c('p')}, {cf.nbytes});")
            else:
                code.append(f"    {{ __be32 t = {cf.c('p')}; __builtin_memcpy(o->{s}, &t, 4); }}")
        else:
            decls.append(f"    __u64 {s};")
            code.append(f"    o->{s} = {cf.c('p')};")
    return (
        "#define XM_NOW() bpf_ktime_get_ns()\n"
        "#define XM_PKT_LEN(ctx) bpf_xdp_get_buff_len(ctx)\n"
        + render_parser(layers, ipv6_ext_max)
        + """
/* ---- test harness: everything the parser produced, into one map slot ---- */
struct xm_out {
    __u32 outcome;
    __u32 linear;          /* data_end - data: the bytes the parser could read */
    struct xm_pkt pkt;
"""
        + "\n".join(decls)
        + """
};

BPF_ARRAY(xm_res, struct xm_out, 1);

int xm_test(struct xdp_md *ctx)
{
    __u32 k = 0;
    struct xm_out *o = xm_res.lookup(&k);
    if (!o)
        return XDP_ABORTED;
    struct xm_pkt pk;
    struct xm_pkt *p = &pk;
    o->outcome = xm_parse(ctx, p);
    o->linear = (__u32)((long)ctx->data_end - (long)ctx->data);
    o->pkt = pk;
"""
        + "\n".join(code)
        + """
    return XDP_PASS;
}
"""
    )


test_program.__test__ = False  # a builder, not a test


class ParserProg:
    """A loaded test program for one layer request."""

    def __init__(self, layers, ipv6_ext_max: int = ref.IPV6_EXT_MAX):
        import bcc

        self.layers = frozenset(layers)
        self.ipv6_ext_max = ipv6_ext_max
        self.src = test_program(layers, ipv6_ext_max)
        self.bpf = bcc.BPF(text=self.src)
        self.fn = self.bpf.load_func("xm_test", bcc.BPF.XDP)
        self.table = self.bpf["xm_res"]
        self.key = self.table.Key(0)
        self.runner = btr.TestRunner(self.fn.fd, want_data_out=False)

    def close(self):
        self.bpf.cleanup()

    def run(self, frame: bytes):
        """(TestRunResult, kernel view or None, monotonic ns before, after)."""
        t0 = time.monotonic_ns()
        res = self.runner.run(frame)
        t1 = time.monotonic_ns()
        if not res.ok:
            return res, None, t0, t1
        return res, self.table[self.key], t0, t1

    def kernel_fields(self, o) -> dict:
        present = {layer for layer, bit in LAYER_BITS.items() if o.pkt.layers & bit}
        vals = {}
        for cf in SCALAR_FIELDS:
            if cf.layer not in present:
                continue
            v = getattr(o, _slot(cf.name))
            vals[cf.name] = bytes(v) if (cf.is_array or cf.ctype == "__be32") else int(v)
        for name, f in FIELDS.items():
            if f.either and f.layer in present:
                vals[name] = (vals[f.either[0]], vals[f.either[1]])
        return vals


def compare(prog: ParserProg, frame: bytes, label: str = "") -> tuple[str, bool]:
    """Run one frame in the kernel and in the decoder; assert they agree exactly.

    Returns (outcome name or "refused", ran_in_kernel).
    """
    res, o, t0, t1 = prog.run(frame)
    if o is None:
        # The kernel would not run it (shorter than ETH_HLEN, or too big).
        assert len(frame) < btr.ETH_HLEN or len(frame) > btr.XDP_TEST_RUN_LINEAR, (label, res.refused)
        return "refused", False
    where = f"{label} ({len(frame)} bytes: {frame[:96].hex()})"
    assert res.retval == XDP_PASS, f"verdict {res.verdict} for {where}"
    assert o.linear == min(len(frame), btr.XDP_TEST_RUN_LINEAR), where
    d = ref.decode(frame, prog.layers, ipv6_ext_max=prog.ipv6_ext_max, linear=o.linear)
    k_outcome = po.name(o.outcome) if o.outcome < po.COUNT else f"<bad {o.outcome}>"
    assert k_outcome == d.outcome, f"outcome kernel={k_outcome} decoder={d.outcome} for {where}"
    d_mask = sum(LAYER_BITS[layer] for layer in d.layers)
    assert o.pkt.layers == d_mask, (
        f"layers kernel={sorted(l for l, b in LAYER_BITS.items() if o.pkt.layers & b)} "
        f"decoder={sorted(d.layers)} for {where}"
    )
    kv = prog.kernel_fields(o)
    ts = kv.pop("pkt.ts")
    assert t0 <= ts <= t1, f"pkt.ts {ts} not within [{t0}, {t1}]"
    dv = dict(d.fields)
    dv.pop("pkt.ts")
    if kv != dv:
        diff = {k: (kv.get(k), dv.get(k)) for k in sorted(set(kv) | set(dv)) if kv.get(k) != dv.get(k)}
        raise AssertionError(f"fields differ (kernel, decoder) {diff} for {where}")
    return d.outcome, True


# ---------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------

def crafted_frames() -> dict[str, bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
    from scapy.layers.ipsec import AH
    from scapy.layers.inet6 import (
        ICMPv6EchoReply,
        ICMPv6EchoRequest,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether
    from scapy.packet import Raw

    E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = dict(src="198.18.0.1", dst="198.19.255.254")
    v6 = dict(src="2001:db8::1", dst="2001:db8:ffff::2")
    f: dict[str, bytes] = {}

    def add(name, pkt):
        f[name] = bytes(pkt)

    add("ipv4_tcp_syn", E / IP(**v4, ttl=61, id=4242, flags="DF", tos=0xB8) /
        TCP(sport=40000, dport=443, flags="S", seq=0xDEADBEEF, window=64240,
            options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))
    add("ipv4_tcp_all_flags", E / IP(**v4) / TCP(sport=1, dport=65535, flags="FSRPAUEC", seq=1, ack=0xFFFFFFFF, window=0))
    add("ipv4_options_tcp", E / IP(**v4, options=[IPOption_RR(routers=["10.0.0.1", "10.0.0.2"])]) /
        TCP(sport=22, dport=5555, flags="PA", seq=7, ack=9) / Raw(b"x" * 20))
    add("ipv4_first_fragment", E / IP(**v4, flags="MF", frag=0, proto=17) / UDP(sport=5000, dport=6000) / Raw(b"a" * 40))
    add("ipv4_nonfirst_fragment", E / IP(**v4, flags="MF", frag=185, proto=6) / Raw(b"\x00" * 40))
    add("ipv4_last_fragment", E / IP(**v4, frag=10, proto=17) / Raw(b"\x00" * 40))
    add("qinq_ipv4_udp", E / Dot1AD(vlan=100, prio=5) / Dot1Q(vlan=4094, prio=1) / IP(**v4) / UDP(sport=1234, dport=4321))
    add("q_then_ad", E / Dot1Q(vlan=7) / Dot1AD(vlan=9) / IPv6(**v6) / TCP(sport=80, dport=81, flags="SA"))
    add("single_vlan_arp", E / Dot1Q(vlan=42, prio=7) / ARP())
    add("three_vlans", E / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(**v4) / TCP())
    add("arp", E / ARP(op=1, psrc="198.18.0.1", pdst="198.18.0.2"))
    add("dns_query", E / IP(**v4) / UDP(sport=33333, dport=53) / DNS(id=0xBEEF, rd=1, qd=DNSQR(qname="example.com")))
    add("dns_response", E / IP(**v4) / UDP(sport=53, dport=33333) /
        DNS(id=0xBEEF, qr=1, aa=1, rd=1, ra=1, rcode=3, opcode=2, tc=1, qd=DNSQR(qname="example.com"),
            an=DNSRR(rrname="example.com", rdata="198.18.0.9")))
    add("dns6_response", E / IPv6(**v6) / UDP(sport=53, dport=53) / DNS(id=1, qr=1, qd=DNSQR(qname="a.b")))
    add("udp53_short_dns", E / IP(**v4) / UDP(sport=53, dport=1000) / Raw(b"\x01\x02\x03"))
    add("icmp_echo", E / IP(**v4) / ICMP(type=8, code=0, id=1, seq=2) / Raw(b"ping"))
    add("icmp_unreach", E / IP(**v4) / ICMP(type=3, code=13) / IP(**v4) / UDP())
    add("icmp6_echo", E / IPv6(**v6, hlim=255, tc=0x2E, fl=0xABCDE) / ICMPv6EchoRequest(id=5, seq=6))
    add("icmp6_after_hbh", E / IPv6(**v6) / IPv6ExtHdrHopByHop() / ICMPv6EchoReply())
    add("icmp_over_ipv6", E / IPv6(**v6, nh=1) / Raw(bytes([8, 0, 0, 0, 0, 0, 0, 0])))
    add("icmp6_over_ipv4", E / IP(**v4, proto=58) / Raw(bytes([128, 0, 0, 0, 0, 0, 0, 0])))
    add("ipv6_hbh_dst_frag_udp", E / IPv6(**v6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrFragment(offset=0, m=1, id=77) / UDP(sport=53, dport=9999) / DNS(id=3, qr=1))
    add("ipv6_nonfirst_fragment", E / IPv6(**v6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=185, m=1, nh=6) / Raw(b"\x00" * 30))
    add("ipv6_atomic_fragment", E / IPv6(**v6) / IPv6ExtHdrFragment(offset=0, m=0, nh=6) / TCP(sport=1, dport=2))
    add("ipv6_routing_tcp", E / IPv6(**v6) / IPv6ExtHdrRouting(addresses=["2001:db8::5"]) / TCP(sport=3, dport=4))
    add("ipv6_ah_tcp", E / IPv6(**v6) / AH(spi=1, seq=1, icv=b"\x00" * 12, nh=6, payloadlen=4) / TCP(sport=5, dport=6))
    six = IPv6(**v6)
    for _ in range(6):
        six = six / IPv6ExtHdrDestOpt()
    add("ipv6_six_ext", E / six / UDP(sport=7, dport=8))
    add("ipv6_seven_ext", E / six / IPv6ExtHdrDestOpt() / UDP(sport=7, dport=8))
    add("ipv6_no_next", E / IPv6(**v6, nh=59))
    add("gre", E / IP(**v4) / GRE() / IP(**v4) / TCP())
    add("tcp_bad_doff", E / IP(**v4) / TCP(dataofs=4))
    add("tcp_doff15_cut", E / IP(**v4) / TCP(dataofs=15) / Raw(b"\x01" * 10))
    add("ipv4_ihl4", E / IP(**v4, ihl=4) / TCP())
    add("ipv4_version5", Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x0800) / (b"\x55" + bytes(IP(**v4) / TCP())[1:]))
    E6 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x86DD)
    add("ipv6_version4", E6 / Raw(b"\x45" + bytes(IPv6(**v6) / UDP())[1:]))
    add("icmp_cut", E / IP(**v4, proto=1) / Raw(b"\x08\x00\x00\x00"))
    add("lldp_like", Ether(type=0x88CC) / Raw(b"\x02\x07\x04" + b"\x00" * 40))
    add("eth_only", E / Raw(b""))
    add("ipv4_fill_60", (E / IP(**v4, len=20, proto=6)) / Raw(b"\x00" * 26))
    # Multi-buffer frames (longer than the linear part of an XDP test-run buffer).
    add("ipv6_udp_5000", E / IPv6(**v6) / UDP(sport=53, dport=53) / DNS(id=9) / Raw(b"z" * 4900))
    hbh = bytes([60, 255]) + b"\x01\xfc" + b"\x00" * 2044   # 2048-byte PadN-filled header
    dst = bytes([17, 255]) + b"\x01\xfc" + b"\x00" * 2044   # 2048-byte, crosses the linear end
    add("ipv6_ext_beyond_linear", E6 /
        Raw(bytes(IPv6(**v6, nh=0, plen=len(hbh) + len(dst) + 8 + 100)) + hbh + dst + bytes(UDP(sport=1, dport=2)) + b"\x00" * 100))
    return f


TRUNCATE_BASES = ["ipv4_tcp_syn", "ipv4_options_tcp", "qinq_ipv4_udp", "ipv6_hbh_dst_frag_udp",
                  "dns_response", "icmp_echo", "icmp6_echo", "ipv6_ah_tcp", "three_vlans"]


def truncations(frames: dict[str, bytes]):
    for name in TRUNCATE_BASES:
        fr = frames[name]
        for n in range(len(fr) + 1):
            yield f"{name}[:{n}]", fr[:n]


def mutations(frames: dict[str, bytes], count: int = 3000, seed: int = 1234):
    """Seeded random byte changes in the header area of the crafted frames."""
    rng = random.Random(seed)
    base = [(k, v) for k, v in frames.items() if 14 <= len(v) <= 2000]
    for i in range(count):
        name, fr = rng.choice(base)
        b = bytearray(fr)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(12, min(len(b), 120))
            b[pos] = rng.choice((0, 1, 6, 17, 44, 51, 58, 60, 0x81, 0x86, 0x88, 0xA8, 0xDD, 0x45, 0x60, 0xFF, rng.randrange(256)))
        if rng.random() < 0.3:
            b = b[: rng.randrange(14, len(b) + 1)]
        yield f"mut{i}:{name}", bytes(b)


def corpus_frames():
    """(file:index, frame) for every frame of every Ethernet capture, read in place."""
    import dpkt

    for path in sorted(CORPUS.glob("*.pcap*")):
        with open(path, "rb") as fh:
            magic = fh.read(4)
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                continue
            for i, (_ts, buf) in enumerate(reader):
                yield f"{path.name}#{i}", bytes(buf)


def _corpus_or_skip():
    if not CORPUS.is_dir():
        msg = f"corpus not found at {CORPUS}"
        if os.environ.get("XDPMON_REQUIRE_KERNEL") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


# ---------------------------------------------------------------------------------------
# Fixtures and tests
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frames():
    return crafted_frames()


@pytest.fixture(scope="module")
def prog_all():
    p = ParserProg(ALL)
    yield p
    p.close()


def test_xdp_test_run_linear_size(prog_all):
    """runtime.dataplane.bpf_test_run.XDP_TEST_RUN_LINEAR is what this kernel really gives."""
    res, o, _, _ = prog_all.run(b"\x00" * 9000)
    assert res.ok and o.linear == btr.XDP_TEST_RUN_LINEAR
    assert o.pkt.len == 9000  # bpf_xdp_get_buff_len(): the whole multi-buffer frame
    res, o, _, _ = prog_all.run(b"\x00" * 100)
    assert o.linear == 100


def test_crafted_frames(prog_all, frames):
    expected = {
        "ipv4_tcp_syn": "ok", "ipv4_tcp_all_flags": "ok", "ipv4_options_tcp": "ok", "ipv4_nonfirst_fragment": "fragment",
        "ipv4_first_fragment": "ok", "ipv4_last_fragment": "fragment", "qinq_ipv4_udp": "ok",
        "q_then_ad": "ok", "single_vlan_arp": "non_ip", "three_vlans": "vlan_too_deep", "arp": "non_ip",
        "dns_query": "ok", "dns_response": "ok", "dns6_response": "ok", "udp53_short_dns": "truncated_dns",
        "icmp_echo": "ok", "icmp6_echo": "ok", "icmp6_after_hbh": "ok", "icmp_over_ipv6": "other_l4",
        "icmp6_over_ipv4": "other_l4", "ipv6_hbh_dst_frag_udp": "ok", "ipv6_nonfirst_fragment": "fragment",
        "ipv6_atomic_fragment": "ok", "ipv6_routing_tcp": "ok", "ipv6_ah_tcp": "ok", "ipv6_six_ext": "ok",
        "ipv6_seven_ext": "ipv6_ext_limit", "ipv6_no_next": "other_l4", "gre": "other_l4",
        "tcp_bad_doff": "bad_tcp_header", "tcp_doff15_cut": "truncated_tcp", "ipv4_ihl4": "bad_ipv4_header",
        "ipv4_version5": "bad_ipv4_header", "ipv6_version4": "bad_ipv6_header", "icmp_cut": "truncated_icmp",
        "lldp_like": "non_ip", "eth_only": "non_ip", "ipv6_udp_5000": "ok",
        "ipv6_ext_beyond_linear": "truncated_ipv6_ext", "icmp_unreach": "ok",
        # Header lengths are not trusted: Ethernet padding after an empty IPv4 packet
        # is parsed as a TCP header (here with data offset 0).
        "ipv4_fill_60": "bad_tcp_header",
    }
    got = {}
    for name, fr in frames.items():
        got[name], ran = compare(prog_all, fr, name)
        assert ran, name
    assert got == expected


def test_every_truncation(prog_all, frames):
    hist = collections.Counter()
    for label, fr in truncations(frames):
        hist[compare(prog_all, fr, label)[0]] += 1
    # Every prefix shorter than 14 bytes is refused by the kernel; the decoder says:
    assert ref.decode(b"\x00" * 13).outcome == "truncated_eth"
    for name in ("truncated_vlan", "truncated_ipv4", "truncated_ipv6", "truncated_ipv6_ext",
                 "truncated_tcp", "truncated_udp", "truncated_icmp", "truncated_icmp6", "truncated_dns"):
        assert hist[name] > 0, (name, hist)


def test_random_mutations(prog_all, frames):
    hist = collections.Counter(compare(prog_all, fr, label)[0] for label, fr in mutations(frames))
    assert len(hist) >= 10, hist


def test_oversized_frame_is_refused(prog_all):
    res, o, _, _ = prog_all.run(b"\x00" * 100_000)
    assert o is None and not res.ok and res.retval is None and "refused" in res.refused
    res = btr.test_run(prog_all.fn.fd, b"\x00" * 13)
    assert res.retval is None and "ETH_HLEN" in res.refused


def test_corpus(prog_all, record_property):
    """Every frame of every capture: same outcome and fields in kernel and decoder."""
    _corpus_or_skip()
    hist = collections.Counter()
    compared = refused = 0
    for label, fr in corpus_frames():
        outcome, ran = compare(prog_all, fr, label)
        hist[outcome] += 1
        compared += ran
        refused += not ran
    assert compared > 7000, (compared, refused)
    record_property("corpus_compared", compared)
    record_property("corpus_refused", refused)
    record_property("corpus_outcomes", dict(hist))
    print(f"\ncorpus: {compared} frames compared, {refused} refused by the kernel; outcomes {dict(hist.most_common())}")


SUBSETS = {
    "ip_only": {"eth", "ip", "ipv4", "ipv6"},
    "eth_only": {"eth", "pkt"},
    "ipv4_unclosed": {"eth", "ipv4"},
    "tcp_closed": {"eth", "pkt", "tcp", "l4", "ip"},
    "icmp6_closed": {"eth", "pkt", "icmp6", "ipv6", "ip"},
    "dns_closed": {"eth", "pkt", "dns", "udp", "l4", "ip"},
}


@pytest.mark.parametrize("subset", sorted(SUBSETS))
def test_layer_subsets(subset, frames):
    layers = SUBSETS[subset]
    prog = ParserProg(layers)
    try:
        possible = {o.name for o in po.possible_outcomes(layers)}
        seen = collections.Counter()
        crafted = {name: compare(prog, fr, f"[{subset}] {name}")[0] for name, fr in frames.items()}
        seen.update(crafted.values())
        sources = [truncations(frames), mutations(frames, count=500, seed=99)]
        if CORPUS.is_dir() and subset in ("ip_only", "tcp_closed"):
            sources.append(corpus_frames())
        for src in sources:
            for label, fr in src:
                outcome, _ = compare(prog, fr, f"[{subset}] {label}")
                seen[outcome] += 1
        assert set(seen) - {"refused"} <= possible, (seen, possible)
        if subset == "ip_only":
            # L4 not parsed (the kernel said so too: compare() checked the layer bits):
            # a TCP SYN is complete as far as requested, and so are fragments and GRE.
            res, o, _, _ = prog.run(frames["ipv4_tcp_syn"])
            assert o.outcome == po.OK and o.pkt.layers & LAYER_BITS["ip"] and not o.pkt.layers & LAYER_BITS["tcp"]
            assert o.f_tcp_sport == 0   # never written
            assert crafted["ipv4_nonfirst_fragment"] == crafted["gre"] == crafted["tcp_bad_doff"] == "ok"
            assert crafted["arp"] == "non_ip" and crafted["ipv6_seven_ext"] == "ipv6_ext_limit"
            assert "fragment" not in possible and "truncated_tcp" not in possible
        if subset == "eth_only":
            assert set(crafted.values()) == {"ok", "vlan_too_deep"}
        if subset == "tcp_closed":
            assert crafted["dns_query"] == "ok" and crafted["icmp_echo"] == "ok"
            assert crafted["icmp_cut"] == "ok" and crafted["udp53_short_dns"] == "ok"
    finally:
        prog.close()


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_single_layer_request(layer, frames):
    """The parser for one layer (closed as the compiler closes it) loads and agrees."""
    prog = ParserProg(closed({layer}))
    try:
        for name, fr in frames.items():
            compare(prog, fr, f"[{layer}] {name}")
    finally:
        prog.close()


def test_ipv6_ext_bounds(frames):
    prog = ParserProg(ALL, ipv6_ext_max=2)
    try:
        assert compare(prog, frames["ipv6_hbh_dst_frag_udp"], "3 ext, bound 2")[0] == "ipv6_ext_limit"
        assert compare(prog, frames["ipv6_routing_tcp"], "1 ext, bound 2")[0] == "ok"
        for label, fr in mutations(frames, count=300, seed=7):
            compare(prog, fr, label)
    finally:
        prog.close()
    # The largest bound the parser accepts still loads (verifier work grows linearly).
    prog = ParserProg(ALL, ipv6_ext_max=15)
    try:
        assert compare(prog, frames["ipv6_seven_ext"], "7 ext, bound 15")[0] == "ok"
    finally:
        prog.close()
    with pytest.raises(Exception):
        ParserProg(ALL, ipv6_ext_max=16)   # #error: offsets could outgrow XM_OFF_MASK


def test_bpf_test_run_api(prog_all, frames):
    fr = frames["ipv4_tcp_syn"]
    res = btr.test_run(prog_all.fn.fd, fr, repeat=50)
    assert (res.retval, res.verdict, res.ok, res.refused) == (XDP_PASS, "XDP_PASS", True, None)
    assert res.data_out == fr and res.duration_ns > 0
    big = frames["ipv6_udp_5000"]
    assert btr.test_run(prog_all.fn.fd, big).data_out == big
    rs = btr.test_run_many(prog_all.fn.fd, [fr, b"\x00" * 3, big, fr[:20]])
    assert [r.retval for r in rs] == [XDP_PASS, None, XDP_PASS, XDP_PASS]
    with pytest.raises(OSError) as exc:
        btr.test_run(prog_all.table.map_fd, fr)   # a map fd is not a program
    assert exc.value.errno and "BPF_PROG_TEST_RUN" in str(exc.value)


def test_batch_throughput(prog_all, frames):
    """The batch helper keeps up: >= 100k frames/s (BPF_PROG_TEST_RUN, one syscall each)."""
    batch = [fr for fr in frames.values() if len(fr) <= btr.XDP_TEST_RUN_LINEAR] * 1000
    runner = btr.TestRunner(prog_all.fn.fd, want_data_out=False)
    t = time.perf_counter()
    verdicts = runner.retvals(batch)
    rate = len(batch) / (time.perf_counter() - t)
    assert set(verdicts) == {XDP_PASS}
    print(f"\nretvals: {rate:,.0f} frames/s")
    assert rate > 100_000
    results = btr.test_run_many(prog_all.fn.fd, batch[:5000])
    assert all(r.retval == XDP_PASS for r in results)
