"""compiler/lower.py: the checked model to the merged IR, before any sharing.

Either-direction ports expand to ``sport OP v or dport OP v``, flags become
``flag == true``, a rule's condition and a statistic's guard include the
app's select, params and rate limiters are numbered program-wide.
"""

from __future__ import annotations

import pytest

from compiler import ir
from compiler.ir import pstr
from spec_helpers import ir_of

S = 1_000_000_000


def lowered(tmp_path, text):
    return ir_of(tmp_path, text, upto="lower")


def select_of(tmp_path, select: str) -> str:
    prog = lowered(tmp_path, "app a { t1 { %s } }" % select)
    return pstr(prog.apps[0].select)


SELECTS = [
    ("layer", "select tcp", "tcp"),
    ("flag", "select tcp.syn", "tcp.syn"),
    ("not-flag", "select not tcp.ack", "not tcp.ack"),
    ("either-port-eq", "select udp.port == 53", "(udp.sport == 53 or udp.dport == 53)"),
    ("either-port-in", "select tcp.port in {80, 443}", "(tcp.sport in {80, 443} or tcp.dport in {80, 443})"),
    ("either-port-l4", "select l4.port == 22", "(l4.sport == 22 or l4.dport == 22)"),
    ("not-either-port", "select not udp.port == 53", "not (udp.sport == 53 or udp.dport == 53)"),
    ("not-in", "select tcp.dport not in {22, 23}", "not tcp.dport in {22, 23}"),
    ("range", "select l4.dport in 1024..65535", "l4.dport in {1024..65535}"),
    ("prefix", "select ipv4.dst in 10.0.0.0/8", "ipv4.dst in {10.0.0.0/8}"),
    ("and-or-precedence", "select tcp.syn and not tcp.ack or udp",
     "((tcp.syn and not tcp.ack) or udp)"),
    ("several-selects-are-or", "select tcp  select udp", "(tcp or udp)"),
    ("nothing-folded-yet", "select ip.ttl <= 255 and pkt.len >= 0", "(ip.ttl <= 255 and pkt.len >= 0)"),
    ("constant-right", "select 53 == udp.dport", "udp.dport == 53"),
]


@pytest.mark.parametrize("select, expected", [s[1:] for s in SELECTS], ids=[s[0] for s in SELECTS])
def test_select(tmp_path, select, expected):
    assert select_of(tmp_path, select) == expected


def test_no_t1_selects_every_packet(tmp_path):
    prog = lowered(tmp_path, 'app a { t2 { n = count() } t3 { when n > 5 { alert "x" } } }')
    a = prog.apps[0]
    assert a.select is None
    assert pstr(a.rules[0].cond) == "a.n.count > 5"          # no select to add
    assert [pstr(ps.guard) for ps in prog.pending_stats] == ["true"]


SPEC = """
app dns_a {
  t1 { select udp.port == 53 }
  t2 {
    q = count(), sum(pkt.len) as bytes by ip.src where not dns.qr window 10s
    r = count(), sum(pkt.len) as bytes by ip.dst where dns.qr window 10s
  }
  t3 {
    when dns.qr and r.bytes > param min = 1M and r.bytes > (param ratio = 10) * q[ip.dst].bytes {
      send packet(ip.src, ip.dst, pkt.len) to asl limit 100/s
      alert "amplification" limit 1/s
    }
  }
}
app conns {
  mode on_demand
  t1 { select tcp }
  t2 {
    t = track (ip.src, tcp.sport) open when tcp.syn and not tcp.ack close when tcp.fin expire 30s
  }
  t3 {
    when size(t) > param max = 100 {
      send summary to asl every 2s
      alert "too many"
    }
    when size(t) > 1000 { send packet(ip.src) to asl }
  }
}
app watch {
  param threshold = 5k
  t2 { f = distinct(ip.src, ip.dst) window 1s }
  t3 { when f > param threshold { enable conns for 1m } }
}
"""


@pytest.fixture
def spec_prog(tmp_path):
    return lowered(tmp_path, SPEC)


def test_apps(spec_prog):
    assert [(a.name, a.index, a.mode, a.file, a.stats) for a in spec_prog.apps] == [
        ("dns_a", 0, "always", "a.mon", ("q", "r")),
        ("conns", 1, "on_demand", "a.mon", ("t",)),
        ("watch", 2, "always", "a.mon", ("f",)),
    ]


def test_rule_conditions_include_the_select(spec_prog):
    rules = [(r.id, r.app, pstr(r.cond)) for a in spec_prog.apps for r in a.rules]
    assert rules == [
        (0, "dns_a", "((udp.sport == 53 or udp.dport == 53) and (dns.qr and dns_a.r[ip.dst].bytes > "
                     "param dns_a.min and dns_a.r[ip.dst].bytes > (param dns_a.ratio * dns_a.q[ip.dst].bytes)))"),
        (1, "conns", "(tcp and size(conns.t) > param conns.max)"),
        (2, "conns", "(tcp and size(conns.t) > 1000)"),
        (3, "watch", "watch.f.distinct > param watch.threshold"),
    ]


def test_stat_values_name_their_stat_and_key(spec_prog):
    cond = spec_prog.apps[0].rules[0].cond
    cmps = [o for o in cond.operands[1].operands if isinstance(o, ir.PCmp)]
    implicit = cmps[1].left                 # r.bytes: read with r's own key (ip.dst)
    explicit = cmps[2].right.right          # q[ip.dst].bytes: q (keyed by ip.src) read with ip.dst
    assert implicit.app == "dns_a" and implicit.stat == "r" and implicit.member == "bytes"
    assert [f.name for f in implicit.key] == ["ip.dst"]
    assert explicit.app == "dns_a" and explicit.stat == "q" and explicit.member == "bytes"
    assert [f.name for f in explicit.key] == ["ip.dst"]
    assert explicit.slot is None            # filled in later
    size = spec_prog.apps[1].rules[0].cond.operands[1].left
    assert size == ir.VSize("conns", "t")


def test_stat_guards_are_select_and_where(spec_prog):
    got = [(ps.app, ps.stat.name, ps.mode, pstr(ps.guard),
            None if ps.open_guard is None else pstr(ps.open_guard),
            None if ps.close_guard is None else pstr(ps.close_guard)) for ps in spec_prog.pending_stats]
    assert got == [
        ("dns_a", "q", "always", "((udp.sport == 53 or udp.dport == 53) and not dns.qr)", None, None),
        ("dns_a", "r", "always", "((udp.sport == 53 or udp.dport == 53) and dns.qr)", None, None),
        ("conns", "t", "on_demand", "tcp", "(tcp and (tcp.syn and not tcp.ack))",
         "(tcp and tcp.fin)"),
        ("watch", "f", "always", "true", None, None),
    ]


def test_params_are_numbered_program_wide(spec_prog):
    assert [(p.index, p.app, p.name, p.default) for p in spec_prog.params] == [
        (0, "dns_a", "min", 1_000_000),
        (1, "dns_a", "ratio", 10),
        (2, "conns", "max", 100),
        (3, "watch", "threshold", 5000),
    ]


def test_actions_and_rate_limiters(spec_prog):
    acts = [ir.action_str(act) for a in spec_prog.apps for r in a.rules for act in r.actions]
    assert acts == [
        "send packet(ip.src, ip.dst, pkt.len) limit 100/s [rl0]",
        "alert 'amplification' limit 1/s [rl1]",
        "send summary every 2s [rl2]",
        "alert 'too many' limit 1/s [rl3]",
        "send packet(ip.src) limit 1000/s [rl4]",
        "enable conns for 1m",
    ]
    summary = spec_prog.apps[1].rules[0].actions[0]
    assert summary.every_ns == 2 * S
    assert summary.limit == ir.Limit(1, 2 * S, "1/2s")          # "every" is itself a limit
    assert summary.limit.interval_ns == 2 * S
    enable = spec_prog.apps[2].rules[0].actions[0]
    assert enable == ir.AEnable("conns", 60 * S)
    pkt = spec_prog.apps[0].rules[0].actions[0]
    assert [f.name for f in pkt.fields] == ["ip.src", "ip.dst", "pkt.len"]
    assert pkt.limit.interval_ns == S // 100


def test_nothing_is_shared_or_interned_yet(spec_prog):
    assert spec_prog.preds == [] and spec_prog.maps == [] and spec_prog.stat_slots == {}
    assert len(spec_prog.pending_stats) == 4


def test_the_same_stat_in_two_apps_is_two_pending_stats(tmp_path):
    prog = lowered(tmp_path, """
app a { t1 { select tcp } t2 { x = count() by ip.src } }
app b { t1 { select tcp } t2 { x = count() by ip.src } }
""")
    assert [(ps.app, ps.stat.name, pstr(ps.guard)) for ps in prog.pending_stats] == [
        ("a", "x", "tcp"), ("b", "x", "tcp")]
