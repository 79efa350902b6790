"""Normalise predicate trees so that equal conditions look equal.

- and/or are flattened (``a and (b and c)`` is ``a and b and c``), their
  operands deduplicated and sorted by a stable structural key;
- constants fold: ``x and false`` is false, ``x or true`` is true, a
  comparison of two constants is its result, ``not not x`` is ``x``;
- comparisons that cannot be true for an unsigned field fold to false
  (``tcp.dport < 0``) and ones that always hold reduce to the field's layer
  test (``pkt.len >= 0``), since a comparison on an absent field is false;
- an ``in`` with one exact member is ``==``;
- in an ``and``, a layer test another operand implies is dropped (``l4 and tcp.syn`` is
  ``tcp.syn``: a comparison on an absent field is false, so ``tcp.syn`` holds only where
  TCP, hence L4, was parsed), so that an app's ``select l4`` and a statistic's ``where
  tcp.syn`` guard the same packets as another app's ``select tcp.syn``.

Pure functions from ir.Pred to ir.Pred; no interning here.
"""

from __future__ import annotations

from dsl.fields import Kind, implied_layers

from .. import ir

_CMP = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def normalize(p: ir.Pred) -> ir.Pred:
    if isinstance(p, (ir.PTrue, ir.PFalse, ir.PLayer, ir.PRef)):
        return p
    if isinstance(p, ir.PNot):
        inner = normalize(p.operand)
        if isinstance(inner, ir.PNot):
            return inner.operand
        if isinstance(inner, ir.PTrue):
            return ir.PFalse()
        if isinstance(inner, ir.PFalse):
            return ir.PTrue()
        return ir.PNot(inner)
    if isinstance(p, (ir.PAnd, ir.POr)):
        return _boolop(p)
    if isinstance(p, ir.PCmp):
        return _cmp(p)
    if isinstance(p, ir.PIn):
        return _in(p)
    raise AssertionError(p)


def _boolop(p):
    is_and = isinstance(p, ir.PAnd)
    absorbing = ir.PFalse if is_and else ir.PTrue
    neutral = ir.PTrue if is_and else ir.PFalse
    flat: dict = {}
    stack = [normalize(o) for o in p.operands]
    while stack:
        o = stack.pop(0)
        if isinstance(o, type(p)):
            stack[0:0] = list(o.operands)
            continue
        if isinstance(o, absorbing):
            return absorbing()
        if isinstance(o, neutral):
            continue
        flat.setdefault(ir.pkey(o), o)
    if not flat:
        return neutral()
    ops = [flat[k] for k in sorted(flat, key=repr)]
    if is_and:
        ops = _without_implied_layers(ops)
    if len(ops) == 1:
        return ops[0]
    return type(p)(tuple(ops))


def _layers_implied(p) -> set[str]:
    """The layers that are parsed whenever ``p`` holds."""
    if isinstance(p, ir.PLayer):
        return implied_layers(p.layer)
    if isinstance(p, ir.PAnd):
        return set().union(*(_layers_implied(o) for o in p.operands))
    if isinstance(p, ir.POr):                     # what every branch implies
        return set.intersection(*(_layers_implied(o) for o in p.operands))
    if isinstance(p, ir.PCmp):
        vals = (p.left, p.right)
    elif isinstance(p, ir.PIn):
        vals = (p.value,)
    else:
        return set()
    out: set[str] = set()
    for v in vals:
        if isinstance(v, ir.VField) and v.field.layer != "pkt":
            out |= implied_layers(v.field.layer)
    return out


def _without_implied_layers(ops: list) -> list:
    implied = [_layers_implied(o) for o in ops]
    return [o for i, o in enumerate(ops)
            if not (isinstance(o, ir.PLayer)
                    and any(o.layer in imp for j, imp in enumerate(implied) if j != i))]


def _field_bits(v):
    if isinstance(v, ir.VField) and v.field.kind == Kind.INT:
        return v.field.bits
    return None


def _cmp(p: ir.PCmp) -> ir.Pred:
    left, right, op = p.left, p.right, p.op
    if isinstance(left, ir.VConst) and isinstance(right, ir.VConst):
        return ir.PTrue() if _CMP[op](left.value, right.value) else ir.PFalse()
    if isinstance(left, ir.VConst) and not isinstance(right, ir.VConst):
        left, right = right, left
        op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
    # Two non-constant operands: order them by key, mirroring the operator, so
    # that a == b is b == a and a < b is b > a.
    if not isinstance(right, ir.VConst) and repr(ir.vkey(left)) > repr(ir.vkey(right)):
        left, right = right, left
        op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
    bits = _field_bits(left)
    if bits is not None and isinstance(right, ir.VConst) and isinstance(right.value, int) \
            and not isinstance(right.value, bool):
        top = (1 << bits) - 1
        c = right.value
        layer = left.field.layer
        present = ir.PTrue() if layer == "pkt" else ir.PLayer(layer)
        if (op == "<" and c == 0) or (op == ">" and c >= top) or (op in ("==",) and c > top) \
                or (op == ">=" and c > top):
            return ir.PFalse()
        if (op == ">=" and c == 0) or (op == "<=" and c >= top) or (op == "!=" and c > top):
            return present
    # A flag compared with false is "not flag" only when the layer is present.
    return ir.PCmp(op, left, right)


def _in(p: ir.PIn) -> ir.Pred:
    items = []
    seen = set()
    for it in p.items:
        if it.key() not in seen:
            seen.add(it.key())
            items.append(it)
    items.sort(key=lambda i: repr(i.key()))
    if len(items) == 1 and items[0].kind == "eq":
        return _cmp(ir.PCmp("==", p.value, ir.VConst(_value_kind(p.value), items[0].lo)))
    return ir.PIn(p.value, tuple(items))


def _value_kind(v) -> Kind:
    if isinstance(v, ir.VField):
        return v.field.kind
    return Kind.INT
