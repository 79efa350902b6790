"""Every reference spec in specs/ loads without error, and says what it should.

The facts checked here are the checked model (compiler/model.py) that the rest
of the compiler builds on: app names, modes, statistics and their values, keys,
windows, sizes, params and the layers each app's t1 guarantees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler.frontend import load

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.mon"))
S = 1_000_000_000


@pytest.fixture(scope="module")
def program():
    prog, sources = load(SPECS)
    return prog


def test_there_are_reference_specs():
    assert len(SPECS) >= 9


# Specs that name an app of another spec (flow_watch enables syn_flood).
NEEDS = {"flow_watch": ["syn_flood"]}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_each_spec_loads_with_what_it_needs(path):
    others = [path.with_name(n + ".mon") for n in NEEDS.get(path.stem, [])]
    prog, sources = load([path, *others])
    assert str(path) in sources
    # Each reference spec holds one app, named like the file.
    mine = [a for a in prog.apps if a.file == str(path)]
    assert [a.name for a in mine] == [path.stem]


def test_flow_watch_alone_names_an_unknown_app():
    from dsl.errors import SpecError

    with pytest.raises(SpecError) as info:
        load([ROOT / "specs" / "flow_watch.mon"])
    assert [d.message for d in info.value.diagnostics] == ["'enable' names unknown app 'syn_flood'"] * 2


def test_all_specs_load_together(program):
    assert sorted(a.name for a in program.apps) == [
        "dns_amplification", "dns_flows", "flow_watch", "half_open_tcp", "pkt_sizes",
        "port_scan", "syn_flood", "traffic_accounting", "ttl_expiry",
    ]


def test_only_notes_no_errors(program):
    assert all(n.severity == "note" for n in program.notes)


# (app, mode, {stat: members}, {param: default}, number of rules, asl)
FACTS = [
    ("dns_amplification", "always",
     {"queries": ["count", "bytes"], "responses": ["count", "bytes"]},
     {"min_bytes": 1_000_000, "ratio": 10}, 1, "examples/asl/dns_amplification.py"),
    ("dns_flows", "always",
     {"flows": ["count", "sum_pkt_len", "first", "last"], "rcodes": ["count"]}, {}, 0, "examples/asl/dns_flows.py"),
    ("flow_watch", "always", {"flows": ["distinct"], "syns": ["count"]},
     {"syn_threshold": 500, "flow_threshold": 5000}, 2, "examples/asl/flow_watch.py"),
    ("half_open_tcp", "always", {"pending": []}, {"max_pending": 10_000}, 1,
     "examples/asl/half_open_tcp.py"),
    ("pkt_sizes", "always", {"sizes": ["hist_pkt_len", "count", "bytes"]}, {}, 0, "examples/asl/pkt_sizes.py"),
    ("port_scan", "always", {"ports": ["distinct"]}, {"max_ports": 100}, 1, "examples/asl/port_scan.py"),
    ("syn_flood", "on_demand", {"syns": ["count"]}, {"per_dst": 1000}, 1, "examples/asl/syn_flood.py"),
    ("traffic_accounting", "always", {"per_dst": ["packets", "bytes"]}, {}, 0, "examples/asl/traffic_accounting.py"),
    ("ttl_expiry", "always", {"low_ttl": ["count", "last_seen"]}, {"per_src": 100}, 1, "examples/asl/ttl_expiry.py"),
]


@pytest.mark.parametrize("name,mode,stats,params,nrules,asl", FACTS, ids=[f[0] for f in FACTS])
def test_app_facts(program, name, mode, stats, params, nrules, asl):
    app = program.app(name)
    assert app is not None
    assert app.mode == mode
    assert {s.name: s.members for s in app.stats} == stats
    assert {p.name: p.default for p in app.params} == params
    assert len(app.rules) == nrules
    assert app.asl == asl
    assert app.select is not None          # every reference app selects its packets


def _key(stat):
    return [k.field.name for k in stat.key]


def test_dns_amplification(program):
    app = program.app("dns_amplification")
    q, r = app.stat("queries"), app.stat("responses")
    assert _key(q) == ["ip.src"] and _key(r) == ["ip.dst"]
    assert q.window_ns == r.window_ns == 10 * S
    assert [a.func for a in q.aggregates] == ["count", "sum"]
    assert [a.args[0].field.name for a in q.aggregates if a.func == "sum"] == ["pkt.len"]
    assert q.where is not None and r.where is not None
    assert q.size == 16_384 and q.on_full == "count"
    (rule,) = app.rules
    send, alert = rule.actions
    assert [f.field.name for f in send.fields] == ["ip.src", "ip.dst", "pkt.len"]
    assert (send.limit.count, send.limit.per_ns) == (100, S)
    assert alert.message == "DNS amplification towards a victim"
    assert (alert.limit.count, alert.limit.per_ns) == (1, S)


def test_dns_flows(program):
    app = program.app("dns_flows")
    flows = app.stat("flows")
    assert _key(flows) == ["ip.src", "ip.dst", "udp.sport", "udp.dport"]
    assert [a.func for a in flows.aggregates] == ["count", "sum", "min", "max"]
    assert flows.window_ns is None and flows.where is None
    assert _key(app.stat("rcodes")) == ["dns.rcode"]
    assert app.guaranteed_layers == {"pkt", "ip", "l4", "udp"}


def test_flow_watch_enables_syn_flood(program):
    app = program.app("flow_watch")
    flows = app.stat("flows")
    assert flows.key == () and flows.size == 1
    assert flows.window_ns == S
    (agg,) = flows.aggregates
    assert agg.func == "distinct"
    assert [a.field.name for a in agg.args] == ["ip.src", "ip.dst", "l4.sport", "l4.dport"]
    assert agg.option("registers") == 4096              # unkeyed default
    # and SYNs per destination, syn_flood's own statistic, against half of its per_dst
    syns = app.stat("syns")
    assert (_key(syns), syns.window_ns) == (["ip.dst"], S)
    (count,) = syns.aggregates
    assert count.func == "count"
    assert [r.actions[0].app for r in app.rules] == ["syn_flood", "syn_flood"]
    assert {r.actions[0].duration_ns for r in app.rules} == {60 * S}
    assert app.guaranteed_layers == {"pkt", "ip", "l4"}


def test_half_open_tcp_track_table(program):
    app = program.app("half_open_tcp")
    pending = app.stat("pending")
    assert pending.kind == "track"
    assert _key(pending) == ["ip.src", "ip.dst", "tcp.sport", "tcp.dport"]
    assert pending.expire_ns == 30 * S
    assert pending.size == 65_536 and pending.on_full == "lru"
    assert pending.open_when is not None and pending.close_when is not None
    (rule,) = app.rules
    (summary,) = rule.actions
    assert summary.every_ns == S and summary.limit is None
    assert app.guaranteed_layers == {"pkt", "ip", "l4", "tcp"}


def test_pkt_sizes(program):
    sizes = program.app("pkt_sizes").stat("sizes")
    assert _key(sizes) == ["ip.proto"]
    assert [a.func for a in sizes.aggregates] == ["hist", "count", "sum"]
    assert program.app("pkt_sizes").guaranteed_layers == {"pkt", "ip"}


def test_port_scan(program):
    app = program.app("port_scan")
    ports = app.stat("ports")
    assert _key(ports) == ["ip.src"]
    assert ports.size == 65_536 and ports.window_ns == 10 * S
    assert ports.aggregates[0].option("registers") == 64   # keyed default
    # "tcp.syn and not tcp.ack or udp": only what both branches guarantee
    assert app.guaranteed_layers == {"pkt", "ip", "l4"}


def test_syn_flood_is_on_demand(program):
    app = program.app("syn_flood")
    assert app.mode == "on_demand"
    syns = app.stat("syns")
    assert _key(syns) == ["ip.dst"] and syns.window_ns == S
    (rule,) = app.rules
    (send,) = rule.actions
    assert [f.field.name for f in send.fields] == ["ip.src", "ip.dst", "tcp.dport"]
    assert send.limit.count == 1000
    assert app.guaranteed_layers == {"pkt", "ip", "l4", "tcp"}


def test_traffic_accounting(program):
    app = program.app("traffic_accounting")
    per_dst = app.stat("per_dst")
    assert _key(per_dst) == ["ip.dst"] and per_dst.size == 65_536
    assert [(a.func, a.name) for a in per_dst.aggregates] == [("count", "packets"), ("sum", "bytes")]


def test_ttl_expiry(program):
    app = program.app("ttl_expiry")
    low = app.stat("low_ttl")
    assert _key(low) == ["ip.src"]
    assert [(a.func, a.name) for a in low.aggregates] == [("count", "count"), ("max", "last_seen")]
    assert app.guaranteed_layers == {"pkt", "ip"}


def test_every_app_is_unique_across_specs(program):
    names = [a.name for a in program.apps]
    assert len(names) == len(set(names))
