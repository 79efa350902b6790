"""Which protocol layers the merged program must parse: the union of the layers
of every field any predicate, key, argument or event reads, plus what decoding
them requires (tcp needs an IP header, dns needs udp, icmp needs IPv4, ...).
Layers no app needs are not parsed at all: a program that only reads UDP does
not decode TCP. The set is the parser template's request: ``ip`` asks for
IPv4 and IPv6, ``l4`` (used only when an app reads l4.* or tests ``l4``) for
TCP and UDP."""

from __future__ import annotations

from .. import ir

# What decoding a layer requires (unlike dsl.fields.IMPLIES, tcp does not ask
# for "l4": that would decode UDP too).
_REQUIRES = {
    "vlan": ("eth",),
    "tcp": ("ip",),
    "udp": ("ip",),
    "l4": ("ip",),
    "dns": ("udp", "ip"),
    "icmp": ("ipv4",),
    "icmp6": ("ipv6",),
}


def _with_requirements(layer: str) -> set[str]:
    out = {layer}
    for r in _REQUIRES.get(layer, ()):
        out |= _with_requirements(r)
    return out


def implied_layers(layer: str) -> set[str]:
    return _with_requirements(layer)


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
    return frozenset(layers)


def run(prog: ir.ProgramIR) -> ir.ProgramIR:
    prog.layers = needed_layers(prog)
    return prog
