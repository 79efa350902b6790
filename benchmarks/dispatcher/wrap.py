"""xdpmon's generated C of one app, made a link of the dispatcher's chain.

``chain_link(c, chain, shared, next_index)``: the generated entry function
(compiler/abi.py ENTRY_FUNCTION) becomes a static inline function, and a new entry
function of the same name calls it, then tail-calls program ``next_index`` of the chain
(None: the last link returns). The chain and the shared counters are the entry
program's public tables, declared "extern" here.

``share_control(c, ctl_map, name, owner)``: the app's control block (the enable times of
on-demand apps) becomes a table shared with another app program: the one whose rule
enables syn_flood (flow_watch) writes the very block syn_flood's program reads, as in
the merged program. ``owner`` declares it public, the other program "extern".

The generated C is edited at a few exact places; where it no longer has them (the
compiler changed), a ValueError says which, rather than a program that silently does
something else.
"""

from __future__ import annotations

import re

from compiler.abi import ENTRY_FUNCTION

_ENTRY = re.compile(rf"^int {ENTRY_FUNCTION}\(struct xdp_md \*ctx\)$", re.M)
INNER_FUNCTION = "xd_app_main"
SHARED_APP_CALL_FAIL = 6            # entry.c XD_APP_CALL_FAIL
SHARED_N = 8                        # entry.c XD_N


def _replace_once(pattern: re.Pattern, repl: str, c: str, what: str) -> str:
    out, n = pattern.subn(repl, c)
    if n != 1:
        raise ValueError(f"the generated C has {n} {what}, not 1: benchmarks/dispatcher/wrap.py needs updating")
    return out


def chain_link(c: str, chain: str, shared: str, next_index: int | None) -> str:
    """The generated program ``c`` as a link of the chain (see the module doc)."""
    c = _replace_once(_ENTRY, f"static __always_inline int {INNER_FUNCTION}(struct xdp_md *ctx)", c,
                      f"definitions of the entry function {ENTRY_FUNCTION}")
    call = ("    /* only when the tail call failed (no such program, or too many calls) */\n"
            f"    {chain}.call(ctx, {next_index});\n"
            f"    {{ __u32 i = {SHARED_APP_CALL_FAIL}; __u64 *n = {shared}.lookup(&i); if (n) *n += 1; }}\n"
            if next_index is not None else "    /* the last app of the chain */\n")
    return c + f"""
/* ==== the dispatcher's chain (benchmarks/dispatcher/wrap.py) ======================== */
BPF_TABLE("extern", int, int, {chain}, 8);
BPF_TABLE("extern", int, __u64, {shared}, {SHARED_N});

/* The app's program as generated, then the next app's program. */
int {ENTRY_FUNCTION}(struct xdp_md *ctx)
{{
    int verdict = {INNER_FUNCTION}(ctx);
    if (verdict != XDP_PASS)
        return verdict;
{call}    return XDP_PASS;
}}
"""


def share_control(c: str, ctl_map: str, name: str, owner: bool) -> str:
    """The control block ``ctl_map`` as the shared table ``name`` (see the module doc)."""
    decl = re.compile(rf"^BPF_ARRAY\({re.escape(ctl_map)}, struct (\w+), 1\);$", re.M)
    m = decl.search(c)
    if not m:
        raise ValueError(f"the generated C declares no control block 'BPF_ARRAY({ctl_map}, struct ..., 1)': "
                         "benchmarks/dispatcher/wrap.py needs updating")
    kind = f'BPF_TABLE_PUBLIC("array", int, struct {m[1]}, {name}, 1);' if owner else \
        f'BPF_TABLE("extern", int, struct {m[1]}, {name}, 1);'
    c = _replace_once(decl, kind, c, f"declarations of {ctl_map}")
    uses = re.compile(rf"\b{re.escape(ctl_map)}\.lookup\(")
    c, n = uses.subn(f"{name}.lookup(", c)
    if n == 0:
        raise ValueError(f"the generated C never reads {ctl_map}: benchmarks/dispatcher/wrap.py needs updating")
    return c
