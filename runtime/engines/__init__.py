"""Engines: things that execute a compiled program on frames, behind one protocol.

``base`` is the protocol (``Engine``) and the bounded ``EventQueue`` engines
deliver decoded events into; ``kernel`` runs the loaded program under
BPF_PROG_TEST_RUN on the capture's clock; ``reference`` interprets the same
program in Python; ``replay`` feeds an engine the frames of captures and hands
its events on as they occur. ``live`` is the live build loaded for attaching to interfaces, on the kernel clock.

May import: abi, capture, dataplane (and ``compiler``/``dsl``: the reference
interpreter is built from the IR).
"""

from __future__ import annotations

ENGINES = ("kernel", "reference")          # replay engines; runtime/engines/live.py is the live one


def open_engine(name: str, art, **options):
    """The engine ``name`` (one of ENGINES) for compiled artifacts ``art`` (the
    replay build); ``options`` go to its constructor (``poll_every``,
    ``queue_size``; the kernel engine's also ``memory_budget``). The kernel engine
    raises dsl.errors.SpecError when the program's maps need more memory than the
    budget (nothing is loaded), runtime.dataplane.loader.LoadError when the
    program cannot be loaded."""
    if name == "kernel":
        from .kernel import KernelEngine
        return KernelEngine(art, **options)
    if name == "reference":
        from .reference.engine import ReferenceEngine
        return ReferenceEngine(art, **options)
    raise ValueError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")
