"""The programs the live benchmark attaches to the monitor side, one ``Config`` each.

``CONFIGS`` is the list the benchmark runs, in order; a configuration is a name, a
verdict and a function that loads the program and returns a ``Loaded`` (its fd, a
check of what it counted, close). Adding one (e.g. the dispatcher of
benchmarks/dispatcher/) is one line in ``CONFIGS``.

- ``floor-drop`` / ``floor-pass``: an empty XDP program (``return XDP_DROP;`` /
  ``XDP_PASS``): what a frame costs the veth, and with PASS the stack, with no work.
- ``xdpmon-pass``: the live build of all nine specs/, merged, as ``xdpmon run``
  loads it: its verdict is XDP_PASS (the blocklist is empty), so each frame then
  goes up the stack.
- ``xdpmon-drop``: the same generated C with one change, a wrapper: the entry
  function is renamed and made inline, and a new entry calls it and turns its
  XDP_PASS into XDP_DROP. Every frame gets all of xdpmon's work (parse, predicates,
  every map update, T3) and is then dropped, which is what a monitor on a tap or
  mirror port does, and what isolates the program's cost from the stack's (a passed
  frame costs the stack far more than the program). The blocklist with
  ``--enforce`` would drop too, but before the statistics: it would measure less work.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "int xdpmon_main(struct xdp_md *ctx)"
WRAPPER = """
/* ---- the live benchmark's DROP wrapper (benchmarks/live_configs.py) ---- */
int xdpmon_main(struct xdp_md *ctx)
{
    int verdict = xm_monitor_body(ctx);     /* all of xdpmon's work, unchanged */
    return verdict == XDP_PASS ? XDP_DROP : verdict;
}
"""


@dataclass
class Loaded:
    fd: int
    frames: Callable[[], int | None]        # frames the program itself counted (None: it counts none)
    close: Callable[[], None]


@dataclass(frozen=True)
class Config:
    name: str
    verdict: str                            # what the monitor side does with the frames
    load: Callable[[], Loaded]


def _floor(verdict: str) -> Loaded:
    from bcc import BPF
    b = BPF(text=f"int floor_{verdict.lower()}(struct xdp_md *ctx) {{ return XDP_{verdict}; }}")
    fn = b.load_func(f"floor_{verdict.lower()}", BPF.XDP)
    return Loaded(fn.fd, lambda: None, b.cleanup)


def specs() -> list[str]:
    return sorted(glob.glob(str(ROOT / "specs" / "*.mon")))


def _xdpmon_pass() -> Loaded:
    from compiler.driver import compile_files
    from runtime.engines.live import LiveEngine
    eng = LiveEngine(compile_files(specs()))
    return Loaded(eng.fd, lambda: eng.snapshot()["counters"]["frames"], eng.close)


def drop_wrapped(c: str) -> str:
    """The generated C with its entry wrapped so that XDP_PASS becomes XDP_DROP."""
    if c.count(ENTRY) != 1:
        raise ValueError(f"the generated program has {c.count(ENTRY)} entry functions '{ENTRY}', not one")
    return c.replace(ENTRY, "static __always_inline int xm_monitor_body(struct xdp_md *ctx)") + WRAPPER


def _xdpmon_drop() -> Loaded:
    """The live engine (params at their defaults, the ring buffer open, as for
    xdpmon-pass) on the wrapped C."""
    import dataclasses

    from compiler.driver import compile_files
    from runtime.engines.live import LiveEngine
    art = compile_files(specs())
    if (art.manifest.get("stages") or {}).get("map"):
        raise ValueError("the merged program has tail-called stages: a wrapper cannot see the last one's verdict")
    eng = LiveEngine(dataclasses.replace(art, c=drop_wrapped(art.c)))
    return Loaded(eng.fd, lambda: eng.snapshot()["counters"]["frames"], eng.close)


CONFIGS = [
    Config("floor-drop", "DROP", lambda: _floor("DROP")),
    Config("floor-pass", "PASS", lambda: _floor("PASS")),
    Config("xdpmon-pass", "PASS", _xdpmon_pass),
    Config("xdpmon-drop", "DROP", _xdpmon_drop),
]
FLOOR = {"DROP": "floor-drop", "PASS": "floor-pass"}     # the floor of each verdict, for the ratios
