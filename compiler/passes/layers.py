"""Which protocol layers the merged program reads: the layer of every field any
predicate, key, argument or event reads, every layer a predicate tests, plus
eth and pkt. What decoding them takes (tcp needs an IP header, dns needs udp,
...) is compiler.parse_outcomes.decoders_for()'s single rule, applied by the
plan; layers no app reads are not decoded at all (a program that only reads UDP
does not decode TCP). The fields themselves are kept too (``prog.fields``): of the
layers decoded, the parser stores only the members they live in."""

from __future__ import annotations

from dsl.fields import FIELDS

from .. import ir


def fields_read(prog: ir.ProgramIR) -> frozenset[str]:
    """The catalog fields any predicate, key, argument or event of the program reads (by
    name): what the parser must store (compiler/c_fields.py parser_stores)."""
    fields: set[str] = set()
    for n in prog.preds:
        p = n.pred
        if isinstance(p, ir.PCmp):
            fields.update(f.name for f in ir.value_fields(p.left) + ir.value_fields(p.right))
        elif isinstance(p, ir.PIn):
            fields.update(f.name for f in ir.value_fields(p.value))
    for m in prog.maps:
        fields.update(f.name for f in m.key)
        for s in m.slots:
            fields.update(f.name for f in s.args)
    for a in prog.apps:
        for r in a.rules:
            for act in r.actions:
                fields.update(f.name for f in getattr(act, "fields", ()))
    return frozenset(fields)


def needed_layers(prog: ir.ProgramIR, fields: frozenset[str] | None = None) -> frozenset[str]:
    """The layers of the fields read (``fields``, default fields_read(prog)), every layer
    a predicate tests, eth and pkt."""
    layers: set[str] = {"eth", "pkt"}
    layers.update(p.pred.layer for p in prog.preds if isinstance(p.pred, ir.PLayer))
    layers.update(FIELDS[n].layer for n in (fields_read(prog) if fields is None else fields))
    return frozenset(layers)


def run(prog: ir.ProgramIR) -> ir.ProgramIR:
    prog.fields = fields_read(prog)
    prog.layers = needed_layers(prog, prog.fields)
    return prog
