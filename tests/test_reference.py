"""The reference interpreter (runtime/engines/reference/) on its own: no root, no kernel.

- Its parser (runtime/engines/reference/pyparse.py, rendered Python) against
  runtime/engines/reference/decoder.py -- which tests/test_parse_kernel.py holds equal to
  the kernel -- on every corpus frame, for several layer requests, and on
  hypothesis-mutated frames.
- How it is built (from artifacts, or from the IR with or without a manifest).
- Pins of behaviours of the generated C that the reference reproduces on purpose
  (tests/test_differential.py checks them against the kernel too).

What programs compute, on this engine and the kernel alike, is tests/test_semantics.py.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, Dot1Q, IP, IPv6, IPv6ExtHdrDestOpt, TCP, UDP

from compiler import parse_outcomes as po
from compiler.c_fields import LAYER_BITS
from compiler.driver import compile_files
from dsl.fields import FIELDS
from engine_helpers import S, EngineMaker, Eth, run, stat, tcp, udp
from runtime.engines.reference import decoder, pyparse
from runtime.engines.reference.engine import LINEAR, ReferenceEngine
from spec_helpers import closed, rule_fired

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("XDPMON_CORPUS", ROOT.parent / "shared" / "corpus" / "tcpdump-tests"))


# ---- the parser ---------------------------------------------------------------------------

LAYER_SETS = [
    decoder.ALL_LAYERS,
    frozenset({"eth", "pkt"}),
    closed({"tcp"}),
    closed({"udp"}),
    closed({"dns"}),
    closed({"ipv4"}),
    closed({"ipv6", "icmp6"}),
    closed({"icmp"}),
    closed({"vlan"}),
]


_DERIVE_SRC = "lambda %s: {%s}" % (", ".join(list(pyparse.STORAGE) + ["plen", "ts", "L"]), ", ".join(
    f"{name!r}: ({pyparse.field_expr(name)})" for name, f in FIELDS.items() if not f.either))
_DERIVE = None


def _fields_from_storage(outcome, layers_mask, storage, frame):
    """The catalog fields of the present layers, read from storage (as the C reads them)."""
    global _DERIVE
    if _DERIVE is None:
        _DERIVE = eval(compile(_DERIVE_SRC, "<fields>", "eval"))     # noqa: S307 (our own expressions)
    present = {name for name, bit in LAYER_BITS.items() if layers_mask & bit}
    allf = _DERIVE(**storage, plen=len(frame), ts=0, L=layers_mask)
    out = {name: v for name, v in allf.items() if FIELDS[name].layer in present}
    for name, f in FIELDS.items():
        if f.either and f.layer in present:
            out[name] = (out[f.either[0]], out[f.either[1]])
    return po.name(outcome), present, out


def _agree(fn, layers, ext_max, frame, end):
    got = _fields_from_storage(*fn(frame, end), frame)
    d = decoder.decode(frame, layers, ipv6_ext_max=ext_max, linear=end)
    want = (d.outcome, set(d.layers), dict(d.fields, **{"pkt.ts": 0}))
    assert got == want, (sorted(layers), ext_max, end, frame[:80].hex())


def _corpus_frames():
    from runtime.capture.pcap import CaptureError, read_frames

    out = []
    for path in sorted(CORPUS.glob("*.pcap*")):
        try:
            out.extend(fr.data for fr in read_frames(str(path)))
        except CaptureError:
            continue
    return out


def test_field_expressions_cover_the_catalog():
    assert pyparse.check_catalog() == []


@pytest.mark.parametrize("layers", LAYER_SETS, ids=lambda s: "+".join(sorted(s)))
def test_parser_matches_decoder_on_corpus(layers):
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    frames = [fr for fr in _corpus_frames() if len(fr) >= 14]
    assert len(frames) > 1000
    fn = pyparse.decoder_function(layers, 6)
    for fr in frames:
        _agree(fn, layers, 6, fr, min(len(fr), LINEAR))
    if layers == decoder.ALL_LAYERS:        # a shorter linear part and another bound
        fn = pyparse.decoder_function(layers, 1)
        for fr in frames:
            _agree(fn, layers, 1, fr, min(len(fr), 54))


@functools.lru_cache(maxsize=None)
def _decoder_fn(layers, ext_max):
    return pyparse.decoder_function(layers, ext_max)


@functools.lru_cache(maxsize=1)
def _base_frames():
    v6 = IPv6(src="2001:2::1", dst="2001:2::2")
    return [
        bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1", options=b"\x94\x04\x00\x00") / TCP(flags="S")),
        bytes(Eth() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(sport=53) / DNS(qr=1, rcode=3)),
        bytes(Eth() / v6 / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP(dport=53) / DNS(qd=DNSQR(qname="x"))),
        bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1", flags="MF", frag=0) / UDP() / (b"z" * 30)),
        bytes(Eth() / v6 / TCP(sport=1, dport=2, flags="SA")),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.integers(0, 4), edits=st.lists(st.tuples(st.integers(12, 90), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 200), layers=st.sampled_from(LAYER_SETS), ext_max=st.sampled_from([6, 0, 2]))
def test_parser_matches_decoder_on_mutations(base, edits, cut, layers, ext_max):
    fr = bytearray(_base_frames()[base])
    for pos, val in edits:
        if pos < len(fr):
            fr[pos] = val
    fr = bytes(fr[: max(14, len(fr) - cut)])
    _agree(_decoder_fn(layers, ext_max), layers, ext_max, fr, len(fr))


# ---- the engine ------------------------------------------------------------------------------

@pytest.fixture
def engine(tmp_path):
    maker = EngineMaker("reference", tmp_path)
    yield maker
    maker.close()


def test_construction():
    art = compile_files([str(ROOT / "specs" / "traffic_accounting.mon")], replay=True)
    assert ReferenceEngine(art.ir).manifest == ReferenceEngine(art, art.manifest).manifest
    assert "def run(ts, data" in ReferenceEngine(art).source


# ---- what the generated C does that the reference reproduces on purpose ----------------------------

def test_t3_read_keyed_by_a_dns_field(engine):
    """A T3 read of a statistic keyed by a dns (icmp, icmp6) field. (The C once
    stored ``p->layers & XM_L_DNS`` in a __u8, truncating bit 10: never present.)"""
    eng = engine('app d { t1 { select udp.port == 53 } t2 { r = count() by dns.rcode } '
                 't3 { when r > 0 { alert "x" limit 1000/s } } }')
    dns = bytes(Eth() / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(sport=999, dport=53) / DNS(qd=DNSQR(qname="a.example")))
    run(eng, [dns] * 3)
    snap = eng.snapshot()
    assert stat(snap, "d", "r") == [{"key": {"dns.rcode": 0}, "value": {"count": 3}}]
    assert rule_fired(snap["counters"]) == 3


def test_keyed_windowed_distinct_restarts_each_window(engine):
    """A new window clears a keyed distinct's registers. (Until commit 000bb88 the C
    reset only z: values seen in an earlier window were not counted again.)"""
    eng = engine("app u { t2 { d = distinct(l4.sport) by ip.src window 1s } }")
    run(eng, [tcp(sport=1000 + i) for i in range(100)], t0=S)
    key = {"ip.src": "198.18.0.1"}
    assert stat(eng.snapshot(), "u", "d") == [{"key": key, "value": {"distinct": 84}, "last_window": {"distinct": 0}}]
    run(eng, [tcp(sport=1000 + i) for i in range(100)], t0=2 * S)
    # the same ports again: counted again, and the first window's estimate kept as the last one
    assert stat(eng.snapshot(), "u", "d") == [{"key": key, "value": {"distinct": 84}, "last_window": {"distinct": 84}}]


def test_keyed_distinct_read_before_any_value_is_zero(engine):
    """T3 reads 0 for a keyed distinct whose entry exists (another slot of its window
    group created it) but which saw no value. (Until commit 000bb88 the C read
    xm_hll_estimate(0, 0) = am2 << 16 there.)"""
    eng = engine('app k { t2 { a = count() by ip.src window 1s\n'
                 '             b = distinct(l4.dport) by ip.src window 1s where tcp }\n'
                 '        t3 { when b > 1000 { alert "b" limit 1000/s } } }')
    run(eng, [udp(), udp()])
    snap = eng.snapshot()
    assert stat(snap, "k", "b") == [] and rule_fired(snap["counters"]) == 0


def test_event_fields_of_absent_layers_are_zero(engine):
    """send packet(...) sends a field whose layer is absent as 0. (The C once copied
    the shared storage: tcp.dport of a UDP packet was its UDP port.)"""
    eng = engine('app s { t1 { select ip } t3 { when pkt.len > 0 { send packet(tcp.dport, dns.id) to asl limit 1000/s } } }')
    run(eng, [udp(dport=6)])
    assert [e["fields"] for e in eng.snapshot()["events"]] == [{"dns.id": 0, "tcp.dport": 0}]
