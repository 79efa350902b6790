"""Which protocol layers the merged program reads: the layer of every field any
predicate, key, argument or event reads, every layer a predicate tests, plus
eth and pkt. What decoding them takes (tcp needs an IP header, dns needs udp,
...) is compiler.parse_outcomes.decoders_for()'s single rule, applied by the
plan; layers no app reads are not decoded at all (a program that only reads UDP
does not decode TCP)."""

from __future__ import annotations

from .. import ir


def needed_layers(prog: ir.ProgramIR) -> frozenset[str]:
    layers: set[str] = {"eth", "pkt"}
    for n in prog.preds:
        p = n.pred
        if isinstance(p, ir.PLayer):
            layers.add(p.layer)
        elif isinstance(p, ir.PCmp):
            for f in ir.value_fields(p.left) + ir.value_fields(p.right):
                layers.add(f.layer)
        elif isinstance(p, ir.PIn):
            for f in ir.value_fields(p.value):
                layers.add(f.layer)
    for m in prog.maps:
        for f in m.key:
            layers.add(f.layer)
        for s in m.slots:
            for f in s.args:
                layers.add(f.layer)
    for a in prog.apps:
        for r in a.rules:
            for act in r.actions:
                for f in getattr(act, "fields", ()):
                    layers.add(f.layer)
    return frozenset(layers)


def run(prog: ir.ProgramIR) -> ir.ProgramIR:
    prog.layers = needed_layers(prog)
    return prog
