"""How the cost per packet grows with the number of apps, merged and separate,
for three degrees of overlap between the apps.

Generated apps (the shapes below), 1, 2, 4, ..., 64 of them:

- ``shared``: every app the same select and statistic (``select tcp``,
  ``count(), sum(pkt.len) by ip.src``): merged, they are one predicate and one
  slot however many apps;
- ``disjoint``: no predicate and no statistic in common: app i selects
  ``tcp and not tcp.dport == 1000+i`` and keeps ``count(), sum(pkt.len)`` where
  ``pkt.len > i``, keyed by one of 8 key shapes in turn (i mod 8). Statistics
  with the same key fields still share one map (the compiler fuses them: one
  lookup per key shape per packet), so at most 8 maps;
- ``half``: the even apps as in ``shared``, the odd ones as in ``disjoint``.

And ``of8``: 32 apps that hold 8 distinct statistics (app i is disjoint app
i mod 8 under another name), against the 8 disjoint apps merged.

Every program is measured on the TCP established frame (every app selects it;
benchmarks/perf/frames.py) in one interleaved run with the floor (runner.py).
"Separate" at N apps is the sum over the N apps of (app alone - floor), per
round. Sampled, to keep the run within minutes: an app alone is measured for
the 8 disjoint shapes (apps 0..7) and the shared shape; a disjoint app i >= 8
is taken to cost what app i mod 8 costs alone (the same program but for two
constants). Verified instructions (bpf_prog_info.verified_insns, all stages)
are the kernel's; separate is the sum over the N apps' programs, with the same
sampling.
"""

from __future__ import annotations

SIZES = (1, 2, 4, 8, 16, 32, 64)
OVERLAPS = ("shared", "half", "disjoint")
KEY_SHAPES = ("ip.src", "ip.dst", "(ip.src, ip.dst)", "l4.dport", "(ip.src, l4.dport)", "(ip.dst, l4.sport)",
              "ip.proto", "(ip.src, ip.dst, l4.sport, l4.dport)")


def shared_app(name: str) -> str:
    return f"app {name} {{\n  t1 {{ select tcp }}\n  t2 {{ st = count(), sum(pkt.len) by ip.src }}\n}}\n"


def disjoint_app(name: str, i: int) -> str:
    key = KEY_SHAPES[i % len(KEY_SHAPES)]
    return (f"app {name} {{\n  t1 {{ select tcp and not tcp.dport == {1000 + i} }}\n"
            f"  t2 {{ st = count(), sum(pkt.len) by {key} where pkt.len > {i} }}\n}}\n")


def app_text(overlap: str, i: int) -> str:
    """App i of the overlap kind (its name ``a<i>``)."""
    name = f"a{i:03d}"
    if overlap == "shared" or (overlap == "half" and i % 2 == 0):
        return shared_app(name)
    if overlap in ("half", "disjoint"):
        return disjoint_app(name, i)
    if overlap == "of8":
        return disjoint_app(name, i % 8)
    raise ValueError(f"unknown overlap {overlap!r} (one of {', '.join(OVERLAPS)}, of8)")


def spec(overlap: str, n: int) -> str:
    if n < 1 or n > 64:
        raise ValueError(f"{n} apps: the scaling benchmark generates 1 to 64")
    return "\n".join(app_text(overlap, i) for i in range(n))


def alone_sample(overlap: str, i: int) -> str:
    """Which measured alone program stands for app i: "shared" or "disjoint<j>"."""
    if overlap == "shared" or (overlap == "half" and i % 2 == 0):
        return "shared"
    return f"disjoint{i % len(KEY_SHAPES)}"


def programs() -> dict:
    """name -> (spec text) of every program the scaling run loads."""
    out = {"alone:shared": shared_app("a000")}
    for j in range(len(KEY_SHAPES)):
        out[f"alone:disjoint{j}"] = disjoint_app(f"a{j:03d}", j)
    for ov in OVERLAPS:
        for n in SIZES:
            out[f"{ov}:merged:{n}"] = spec(ov, n)
    out["of8:merged:32"] = spec("of8", 32)
    return out


def separate_names(overlap: str, n: int) -> list[str]:
    """The alone programs whose sum is N separate apps."""
    return [f"alone:{alone_sample(overlap, i)}" for i in range(n)]
