"""Which protocol layers the merged program must parse: the union of the layers
of every field any predicate, key, argument or event reads, closed under the
layer implications of dsl/fields.py (tcp needs ip, dns needs udp, ...).
Layers no app needs are not parsed at all."""

from __future__ import annotations

from dsl.fields import implied_layers

from .. import ir


def needed_layers(prog: ir.ProgramIR) -> frozenset[str]:
    layers: set[str] = {"eth", "pkt"}
    for n in prog.preds:
        p = n.pred
        if isinstance(p, ir.PLayer):
            layers |= implied_layers(p.layer)
        elif isinstance(p, ir.PCmp):
            for f in ir.value_fields(p.left) + ir.value_fields(p.right):
                layers |= implied_layers(f.layer)
        elif isinstance(p, ir.PIn):
            for f in ir.value_fields(p.value):
                layers |= implied_layers(f.layer)
    for m in prog.maps:
        for f in m.key:
            layers |= implied_layers(f.layer)
        for s in m.slots:
            for f in s.args:
                layers |= implied_layers(f.layer)
    for a in prog.apps:
        for r in a.rules:
            for act in r.actions:
                for f in getattr(act, "fields", ()):
                    layers |= implied_layers(f.layer)
    # "ip" is parsed as IPv4 and IPv6; "l4" as TCP and UDP.
    if "ip" in layers:
        layers |= {"ipv4", "ipv6"}
    if "l4" in layers:
        layers |= {"tcp", "udp"}
    return frozenset(layers)


def run(prog: ir.ProgramIR) -> ir.ProgramIR:
    prog.layers = needed_layers(prog)
    return prog
